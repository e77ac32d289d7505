"""Text input through espeak-ng: languages, voices, errors, and text -> keypoints -> MP4 with the speech muxed in."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from a2k_toolkit.builtin.espeak import EspeakSynthesizer, languages, resolve_language, variants
from a2k_toolkit.components import num_frames
from a2k_toolkit.errors import InputError

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (CI installs it: apt-get install espeak-ng)"
)

TEXTS = {
    "en": "The quick brown fox jumps over the lazy dog.",
    "de": "Der schnelle braune Fuchs springt über den faulen Hund.",
    "hi": "तेज़ भूरी लोमड़ी आलसी कुत्ते के ऊपर कूदती है।",
}


@pytest.fixture(scope="module")
def pipe():
    from a2k_toolkit.pipeline import Pipeline
    from a2k_toolkit.plugins import make_plugin_manager

    return Pipeline.from_config(
        {"generator": "procedural", "renderer": None, "device": "cpu"},
        plugins=make_plugin_manager(entry_points=False),
    )


@pytest.fixture(scope="module")
def reference(pipe, sample_image_path):
    return pipe.detect(sample_image_path)


def test_more_than_a_hundred_languages_are_listed():
    langs = languages()
    codes = {lang.code for lang in langs} | {a for lang in langs for a in lang.aliases}
    assert len(langs) >= 100
    assert {"en", "de", "hi", "fr", "es", "zh", "ar"} <= codes
    assert {"f3", "m1", "klatt"} <= set(variants())
    assert resolve_language("German") == "de" and resolve_language("EN-US") == "en-us"
    with pytest.warns(UserWarning, match="using 'de'"):
        assert resolve_language("de-AT") == "de"


@pytest.mark.parametrize("lang", list(TEXTS))
def test_speech_in_three_languages_gives_audio_and_keypoints(pipe, reference, sample_image_path, lang):
    wav, sr = EspeakSynthesizer().synthesize(TEXTS[lang], lang)
    assert sr == 22050 and wav.dtype == np.float32 and wav.ndim == 1
    assert 1.0 < len(wav) / sr < 10.0
    assert np.sqrt(np.mean(wav**2)) > 0.02  # real speech, not silence

    result = pipe(sample_image_path, text=TEXTS[lang], lang=lang, reference=reference)
    assert result.sample_rate == 16000
    assert abs(len(result.waveform) - len(wav) * 16000 / 22050) < 2
    assert len(result.keypoints) == num_frames(len(result.waveform) / 16000, 25.0)
    mouth_gap = result.keypoints.points[:, 66, 1] - result.keypoints.points[:, 62, 1]
    assert np.ptp(mouth_gap) > 0.5  # the speech moved the mouth


def test_languages_and_variants_change_the_sound():
    tts = EspeakSynthesizer()
    en, _ = tts.synthesize("Hello, this is a test.", "en")
    de, _ = tts.synthesize("Hello, this is a test.", "de")
    f3, _ = EspeakSynthesizer(variant="f3").synthesize("Hello, this is a test.", "en")
    assert len(en) != len(de) or not np.allclose(en, de)
    assert len(en) != len(f3) or not np.allclose(en, f3)
    assert EspeakSynthesizer(voice="hi").voice_for() == "hi"
    assert EspeakSynthesizer(variant="F3").voice_for("de") == "de+f3"


def test_text_that_looks_like_an_option_is_spoken():
    wav, _ = EspeakSynthesizer().synthesize("--help -v xx", "en")
    assert len(wav) > 22050 * 0.5


def test_unknown_language_and_variant_and_empty_text():
    tts = EspeakSynthesizer()
    with pytest.raises(InputError, match=r"no voice or language 'dee'\. Did you mean 'de'\?.*a2k voices"):
        tts.synthesize("Hallo", "dee")
    with pytest.raises(InputError, match="no voice variant 'f33'"):
        EspeakSynthesizer(variant="f33").synthesize("Hallo", "de")
    with pytest.raises(InputError, match="empty"):
        tts.synthesize("   ", "en")


def test_cli_text_to_video_with_the_speech_muxed_in(tmp_path, sample_image_path, capsys):
    from a2k_toolkit.audio import load_audio
    from a2k_toolkit.cli import main
    from a2k_toolkit.io import load_keypoints, probe_video

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("generator: procedural\nrenderer: {name: sketch, params: {size: 128}}\ndevice: cpu\n")
    video, kp = tmp_path / "out.mp4", tmp_path / "kp.npy"
    rc = main(
        [
            "generate",
            "--image",
            str(sample_image_path),
            "--text",
            TEXTS["de"],
            "--lang",
            "de",
            "--config",
            str(cfg),
            "--keypoints-out",
            str(kp),
            "--video-out",
            str(video),
        ]
    )
    assert rc == 0
    frames = len(load_keypoints(kp))
    info = probe_video(video)
    assert info["audio_codec"] == "aac" and info["frames"] == frames
    sound = load_audio(video, 16000)
    assert abs(len(sound) / 16000 - frames / 25) < 0.1 and np.sqrt(np.mean(sound**2)) > 0.02

    assert (
        main(
            [
                "generate",
                "--image",
                str(sample_image_path),
                "--text",
                "x",
                "--lang",
                "klingonese",
                "--keypoints-out",
                str(kp),
            ]
        )
        == 2
    )
    assert "no voice or language 'klingonese'" in capsys.readouterr().err


def test_cli_lists_voices(capsys):
    from a2k_toolkit.cli import main

    assert main(["voices"]) == 0
    out = capsys.readouterr().out
    assert "de  " in out and "Hindi" in out and "voices;" in out
    assert main(["voices", "--variants"]) == 0
    assert "klatt" in capsys.readouterr().out.split()
