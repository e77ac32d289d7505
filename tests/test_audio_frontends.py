"""Log-mel front-ends: librosa parity, frame alignment, T = ceil(duration * fps), chunking, batching, memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from a2k_toolkit.audio import load_audio
from a2k_toolkit.builtin.librosa_mel import LibrosaMel
from a2k_toolkit.builtin.logmel import LogMel
from a2k_toolkit.errors import ConfigError

PARITY_TOL_DB = 0.01  # torch float32 FFT vs librosa (numpy FFT); measured ~5e-4 dB max on real speech


@pytest.fixture(scope="module")
def speech(speech_path):
    return load_audio(speech_path, 16000)


def librosa_reference(wav: np.ndarray, T: int, *, top_db=None, sr=16000, fps=25.0, sub=4) -> np.ndarray:
    """The documented definition, computed on the whole signal by librosa: mel frame j centred at (j + 0.5) * hop."""
    import librosa

    hop = int(sr // (sub * fps))
    n = T * sub
    lead = 512 // 2 - hop // 2  # so that frame j (window start j * hop) is centred at j * hop + hop / 2
    y = np.zeros(lead + (n - 1) * hop + 512, np.float32)
    m = min(len(wav), len(y) - lead)
    y[lead : lead + m] = wav[:m]
    mel = librosa.feature.melspectrogram(
        y=y,
        sr=sr,
        n_fft=512,
        hop_length=hop,
        win_length=400,
        window="hann",
        center=False,
        power=2.0,
        n_mels=80,
        fmin=55.0,
        fmax=7600.0,
        htk=False,
        norm="slaney",
    )
    db = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=top_db)
    return db.T[:n].reshape(T, sub * 80)


@pytest.mark.parametrize("chunk_frames", [1500, 7])  # one chunk, and many chunks with boundaries inside the speech
def test_logmel_matches_librosa(speech, chunk_frames):
    fe = LogMel(chunk_frames=chunk_frames)
    feats = fe(speech, 16000)
    assert feats.shape == (fe.num_frames(len(speech)), 320) and feats.dtype == np.float32
    ref = librosa_reference(speech, len(feats))
    assert np.abs(feats - ref).max() < PARITY_TOL_DB
    assert ref.max() - ref.min() > 60  # real speech: a wide dynamic range is being compared


def test_librosa_mel_is_the_reference_and_top_db_matches(speech):
    ref = librosa_reference(speech, LogMel().num_frames(len(speech)))
    np.testing.assert_allclose(LibrosaMel(chunk_frames=11)(speech, 16000), ref, atol=1e-3)
    ref80 = librosa_reference(speech, len(ref), top_db=80.0)  # librosa's default top_db
    assert np.abs(LogMel(top_db=80.0)(speech, 16000) - ref80).max() < PARITY_TOL_DB
    assert (ref80 != ref).any()


def _frame_peaks(feats: np.ndarray, sub: int = 4, reduce=np.mean) -> np.ndarray:
    """Loudest mel sub-frame per video frame (dB, bands reduced by ``reduce``)."""
    return reduce(feats.reshape(len(feats), sub, -1), axis=2).max(axis=1)


@pytest.mark.parametrize("fps", [25.0, 30.0])  # 30 fps: a fractional hop (133.3 samples)
@pytest.mark.parametrize("where", [0.03, 0.5, 0.97])  # early, middle and late within the video frame
def test_a_click_shows_up_in_the_frame_that_shows_it(fps, where):
    rng = np.random.default_rng(1)
    wav = (rng.standard_normal(16000 * 2) * 1e-4).astype(np.float32)
    frame = 23
    at = int(round((frame + where) / fps * 16000))
    wav[at : at + 8] = 0.9  # a 0.5 ms click
    peaks = _frame_peaks(LogMel(fps=fps)(wav, 16000))
    assert int(np.argmax(peaks)) == frame


def test_a_tone_burst_covers_exactly_its_frames():
    sr, fps = 16000, 25.0
    t = np.arange(sr * 2) / sr
    wav = np.zeros_like(t, dtype=np.float32)
    on, off = 10, 20  # the burst fills video frames 10..19 exactly
    burst = (t >= on / fps) & (t < off / fps)
    wav[burst] = 0.5 * np.sin(2 * np.pi * 440 * t[burst])
    peaks = _frame_peaks(LogMel(fps=fps)(wav, sr), reduce=np.max)  # the tone's band
    inside = peaks[on:off]
    assert inside.min() > inside.max() - 1.0  # every covered frame sees the full tone
    assert peaks[on - 1] < inside.min() - 6 and peaks[off] < inside.min() - 6  # neighbours only see window tails
    assert (peaks[: on - 2] < -90).all() and (peaks[off + 2 :] < -90).all()  # further away: the -100 dB floor


@pytest.mark.parametrize("cls", [LogMel, LibrosaMel])
@pytest.mark.parametrize(
    ("samples", "frames"),
    [(1, 1), (640, 1), (641, 2), (16000, 25), (16000 + 1, 26), (int(16000 * 1.234), 31)],
)
def test_frame_count_is_ceil_duration_times_fps(cls, samples, frames):
    wav = np.random.default_rng(0).standard_normal(samples).astype(np.float32) * 0.1
    feats = cls()(wav, 16000)
    assert feats.shape == (frames, 320)
    assert np.isfinite(feats).all()


def test_ten_minutes_are_chunked_with_bounded_memory():
    """10 min of audio: T = ceil(600 * 25) = 15000, and the peak memory beyond input and output stays bounded by the
    chunk (an unchunked computation of the same features needs about 330 MB more)."""
    code = textwrap.dedent(
        """
        import json, resource
        import numpy as np
        from a2k_toolkit.builtin.logmel import LogMel
        fe = LogMel()
        fe(np.zeros(16000, np.float32), 16000)  # imports, FFT plans
        wav = np.random.default_rng(0).standard_normal(600 * 16000, dtype=np.float32) * 0.1
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out = fe(wav, 16000)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({"shape": out.shape, "out_mb": out.nbytes / 2**20, "extra_mb": (after - before) / 1024,
                          "finite": bool(np.isfinite(out).all())}))
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), *sys.path])}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert tuple(r["shape"]) == (15000, 320) and r["finite"]
    assert r["extra_mb"] < r["out_mb"] + 100, r


def test_chunking_does_not_change_values(speech):
    whole = LogMel(chunk_frames=100000)(speech, 16000)
    np.testing.assert_allclose(LogMel(chunk_frames=1)(speech, 16000), whole, atol=1e-4)


def test_batched_input_equals_one_at_a_time(speech):
    fe = LogMel()
    a, b = speech, speech[::-1].copy() * 0.3
    out = fe(np.stack([a, b]), 16000)
    assert out.shape == (2, fe.num_frames(len(a)), 320)
    np.testing.assert_allclose(out[0], fe(a, 16000), atol=1e-4)
    np.testing.assert_allclose(out[1], fe(b, 16000), atol=1e-4)
    short = speech[:5000]
    outs = LogMel(top_db=60.0).batch([speech, short], 16000)
    assert [o.shape for o in outs] == [(fe.num_frames(len(speech)), 320), (8, 320)]
    np.testing.assert_allclose(outs[1], LogMel(top_db=60.0)(short, 16000), atol=1e-4)


def test_params_are_checked_and_layout_is_stable():
    fe = LogMel()
    assert fe.feature_shape == (4, 80) and fe.feature_dim == 320 and fe.sample_rate == 16000
    assert LogMel(subframes=2, n_mels=40).feature_shape == (2, 40)
    with pytest.raises(Exception, match="extra"):
        LogMel(n_mel=80)
    with pytest.raises(Exception, match="win_length"):
        LogMel(win_length=1024, n_fft=512)
    with pytest.raises(ConfigError, match="whole number of samples"):
        LibrosaMel(fps=30.0)(np.zeros(16000, np.float32), 16000)
    with pytest.raises(Exception, match=r"\(B, N\)"):
        fe(np.zeros((2, 2, 100), np.float32), 16000)


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device")
def test_logmel_on_cuda_matches_cpu(speech):
    cpu = LogMel()(speech, 16000)
    gpu = LogMel().to("cuda")(speech, 16000)
    assert np.abs(cpu - gpu).max() < PARITY_TOL_DB


def test_librosa_mel_in_a_pipeline(catalog, sample_image_path, sample_speech_path):
    from a2k_toolkit.pipeline import Pipeline

    pipe = Pipeline.from_config(
        {"audio": "librosa-mel", "generator": "procedural", "renderer": None, "device": "cpu"}, plugins=catalog
    )
    result = pipe(sample_image_path, sample_speech_path)
    wav = load_audio(sample_speech_path, 16000)
    assert len(result.keypoints) == LogMel().num_frames(len(wav))
