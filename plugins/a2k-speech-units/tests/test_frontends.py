"""The ``vad`` and ``phonetic`` front-ends on real models: frame counts, silence, speech timing, visemes, errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import SR, speak, with_silences

from a2k_speech_units import PHONES, VISEMES, PhoneticFrontend, VADFrontend, phone_to_viseme
from a2k_toolkit.errors import A2KError, InputError
from a2k_toolkit.testing import AudioFrontendContract

SIL = VISEMES.index("silence")
BILABIAL = VISEMES.index("bilabial")


class TestVADContract(AudioFrontendContract):
    component_class = VADFrontend


class TestPhoneticContract(AudioFrontendContract):
    component_class = PhoneticFrontend


def frames_inside(spans, T, fps=25.0, margin=0.12):
    """Frames whose whole interval lies inside one of ``spans`` shrunk by ``margin`` s, and frames whose interval is
    at least ``margin`` s away from every span."""
    t0, t1 = np.arange(T) / fps, (np.arange(T) + 1) / fps
    inside = np.zeros(T, bool)
    outside = np.ones(T, bool)
    for a, b in spans:
        inside |= (t0 >= a + margin) & (t1 <= b - margin)
        outside &= (t1 <= a - margin) | (t0 >= b + margin)
    return inside, outside


@pytest.mark.parametrize("cls", [VADFrontend, PhoneticFrontend])
@pytest.mark.parametrize("sr", [8000, 16000, 22050, 44100, 48000])
def test_frame_counts_any_rate_and_length(cls, sr):
    fe = cls()
    rng = np.random.default_rng(0)
    for seconds in (0.0, 1 / sr, 0.03, 0.04, 0.099, 1.0, 2.37):
        n = int(round(seconds * sr))
        feats = fe((0.1 * rng.standard_normal(n)).astype(np.float32), sr)
        assert feats.shape == (fe.num_frames(n, sr), fe.feature_dim), (seconds, sr, feats.shape)
        assert feats.dtype == np.float32 and np.isfinite(feats).all()


def test_frame_counts_other_fps():
    for cls in (VADFrontend, PhoneticFrontend):
        fe = cls(fps=30)
        assert fe(np.zeros(int(2.5 * SR), np.float32), SR).shape == (75, fe.feature_dim)


@pytest.mark.parametrize("noise_db", [None, -70.0])
def test_silence(noise_db):
    n = 3 * SR
    wav = np.zeros(n, np.float32) if noise_db is None else with_silences([], [3.0], noise_db)[0]
    vad = VADFrontend()(wav, SR)
    assert vad[:, 0].max() < 0.1
    # far below speech level: the reference level is at least -50 dBFS, so -70 dBFS noise sits at -20 dB
    assert (vad[:, 1] <= -19).all()
    ph = PhoneticFrontend()(wav, SR)
    assert (ph[:, SIL] == 1).all()


def test_speech_between_silences_is_timed(dialogue):
    vad = VADFrontend()(dialogue.wav, SR)
    ph = PhoneticFrontend()(dialogue.wav, SR)
    T = len(vad)
    assert T == int(np.ceil(dialogue.duration * 25 - 1e-6))
    inside, outside = frames_inside(dialogue.spans, T)
    # speech detected where it speaks, nothing in the silences
    assert (vad[inside, 0] > 0.5).mean() > 0.85 and vad[inside, 0].mean() > 0.8
    assert vad[outside, 0].max() < 0.2
    assert (vad[inside, 1] > -30).mean() > 0.8 and (vad[outside, 1] < -40).all()
    # the silence frames come out as the silence class, the speech mostly as other classes
    assert (ph[outside, SIL] > 0.99).all()
    assert (ph[inside].argmax(1) != SIL).mean() > 0.8
    np.testing.assert_allclose(ph.sum(1), 1.0, atol=1e-5)
    # onsets and offsets: within two frames (80 ms) of the truth
    speaking_vad = vad[:, 0] > 0.5
    speaking_ph = ph[:, SIL] < 0.5
    for a, b in dialogue.spans:
        for speaking in (speaking_vad, speaking_ph):
            idx = np.flatnonzero(speaking[int(a * 25) - 10 : int(b * 25) + 10]) + int(a * 25) - 10
            assert abs(idx[0] - a * 25) <= 2 and abs(idx[-1] + 1 - b * 25) <= 2, (a, b, idx[0], idx[-1])


@pytest.mark.parametrize("word", ["mama", "baby", "my mom"])
def test_bilabial_words_give_bilabial_frames(word):
    wav, [(a, b)] = with_silences([speak(word)], [0.5, 0.5])
    fe = PhoneticFrontend()
    feats = fe(wav, SR)
    names = [VISEMES[i] for i in feats.argmax(1)]
    assert feats[:, BILABIAL].sum() >= 1.0 and "bilabial" in names, names  # at least one frame's worth (40 ms)
    t = np.arange(len(feats)) / 25
    assert feats[(t < a - 0.08) | (t > b + 0.08), BILABIAL].sum() == 0  # only where the word is
    phones = [ph for ph, _, _ in fe.phones(wav)]
    assert {"M", "B"} & set(phones) and phones[0] == phones[-1] == "SIL"
    as_phones = PhoneticFrontend(units="phone")(wav, SR)
    lips = [PHONES.index(p) for p in ("P", "B", "M")]
    assert as_phones.shape == (len(feats), 40)
    np.testing.assert_allclose(as_phones[:, lips].sum(1), feats[:, BILABIAL], atol=1e-6)


def test_smoothing_chunking_and_units(dialogue):
    base = PhoneticFrontend()(dialogue.wav, SR)
    smooth = PhoneticFrontend(smooth_ms=40)(dialogue.wav, SR)
    np.testing.assert_allclose(smooth.sum(1), 1.0, atol=1e-5)
    assert np.abs(np.diff(smooth, axis=0)).sum() < np.abs(np.diff(base, axis=0)).sum()
    chunked = PhoneticFrontend(chunk_seconds=2, context_seconds=0.5)(dialogue.wav, SR)
    assert (chunked.argmax(1) == base.argmax(1)).mean() > 0.8
    assert phone_to_viseme("+SPN+") == "silence" and phone_to_viseme("ow") == "mid-rounded"


def test_vad_segments_close_to_streaming(dialogue):
    wav = np.tile(dialogue.wav, 3)
    stream = VADFrontend()(wav, SR)
    batched = VADFrontend(segment_seconds=4)(wav, SR)
    np.testing.assert_array_equal(stream[:, 1], batched[:, 1])
    assert (np.abs(stream[:, 0] - batched[:, 0]) < 0.1).mean() > 0.9


def test_vad_keeps_torch_threads():
    import torch

    before = torch.get_num_threads()
    VADFrontend()(np.zeros(SR, np.float32), SR)
    assert torch.get_num_threads() == before
    assert "silero_vad" not in sys.modules  # its import would set torch's threads to 1 for the whole process


def test_long_audio_memory_is_bounded():
    """Four minutes through both front-ends in a fresh process: peak memory grows by less than the waveform's copies
    plus 150 MB (the 16 kHz float32 audio is 15 MB)."""
    code = r"""
import resource, numpy as np
from a2k_speech_units import PhoneticFrontend, VADFrontend
fe_v, fe_p = VADFrontend(), PhoneticFrontend()
fe_v(np.zeros(16000, np.float32), 16000); fe_p(np.zeros(16000, np.float32), 16000)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rng = np.random.default_rng(0)
t = np.arange(240 * 16000) / 16000
wav = (0.2 * np.sin(2 * np.pi * 150 * t) * (np.sin(2 * np.pi * 0.7 * t) > 0) + 0.01 * rng.standard_normal(len(t)))
wav = wav.astype(np.float32)
del t
v = fe_v(wav, 16000); p = fe_p(wav, 16000)
assert v.shape == (6000, 2) and p.shape == (6000, 14)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout.strip()) < 150, out.stdout


def test_errors_name_the_problem():
    with pytest.raises(InputError, match="mono"):
        VADFrontend()(np.zeros((2, 100), np.float32), SR)
    with pytest.raises(InputError, match="NaN"):
        PhoneticFrontend()(np.full(100, np.nan, np.float32), SR)
    with pytest.raises(InputError, match="positive"):
        VADFrontend()(np.zeros(100, np.float32), 0)
    assert issubclass(InputError, A2KError)


def test_registered_through_the_entry_point():
    from a2k_toolkit.catalog import Catalog

    cat = Catalog()
    for name, cls in (("vad", VADFrontend), ("phonetic", PhoneticFrontend)):
        entry = cat.entry("audio", name)
        assert entry.cls is cls and entry.distribution == "a2k-speech-units"
