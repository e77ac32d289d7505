"""Built-in components pass the same contract checks as third-party plugins, plus their own behaviour."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import SHARED_DATA

from a2k_toolkit.builtin.baselines import ProceduralGenerator, StaticGenerator
from a2k_toolkit.builtin.dlib_detector import DlibDetector
from a2k_toolkit.builtin.espeak import EspeakSynthesizer
from a2k_toolkit.builtin.librosa_mel import LibrosaMel
from a2k_toolkit.builtin.logmel import LogMel
from a2k_toolkit.builtin.sketch import SketchRenderer
from a2k_toolkit.errors import NoFaceFoundError
from a2k_toolkit.io import load_audio, load_image
from a2k_toolkit.keypoints import Keypoints
from a2k_toolkit.testing import (
    AudioFrontendContract,
    DetectorContract,
    GeneratorContract,
    RendererContract,
    SpeechContract,
    mean_face,
)


class TestLogMelContract(AudioFrontendContract):
    component_class = LogMel


class TestLibrosaMelContract(AudioFrontendContract):
    component_class = LibrosaMel


class TestStaticContract(GeneratorContract):
    component_class = StaticGenerator


class TestProceduralContract(GeneratorContract):
    component_class = ProceduralGenerator


class TestSketchContract(RendererContract):
    component_class = SketchRenderer
    params = {"size": 96}


class TestDlibContract(DetectorContract):
    component_class = DlibDetector
    face_image = SHARED_DATA / "faces" / "obama.jpg"


class TestEspeakContract(SpeechContract):
    component_class = EspeakSynthesizer


def test_dlib_landmarks_land_on_the_face(shared_data):
    img = load_image(shared_data / "faces" / "obama.jpg")
    det = DlibDetector()
    pts = det.detect(img).points[0]
    left, top, right, bottom = det.face_boxes(img)[0]
    inside = (pts[:, 0] > left - 10) & (pts[:, 0] < right + 10) & (pts[:, 1] > top - 25) & (pts[:, 1] < bottom + 25)
    assert inside.mean() > 0.95
    # anatomy: eyes above the nose tip above the mouth; right-eye points (image left) left of left-eye points
    assert pts[36:48, 1].mean() < pts[30, 1] < pts[48:68, 1].mean()
    assert pts[36:42, 0].mean() < pts[42:48, 0].mean()


def test_dlib_picks_largest_face_and_warns(shared_data):
    import cv2

    a = load_image(shared_data / "faces" / "obama.jpg")
    b = cv2.resize(load_image(shared_data / "faces" / "leo.jpg"), None, fx=0.6, fy=0.6)
    h = max(a.shape[0], b.shape[0])
    canvas = np.full((h, a.shape[1] + b.shape[1], 3), 255, np.uint8)
    canvas[: a.shape[0], : a.shape[1]] = a
    canvas[: b.shape[0], a.shape[1] :] = b
    det = DlibDetector()
    assert len(det.detect_all(canvas)) == 2
    with pytest.warns(UserWarning, match="2 faces found"):
        kp = det.detect(canvas)
    assert kp.points[0, :, 0].max() < a.shape[1]  # the larger face, on the left


def test_dlib_no_face_message():
    with pytest.raises(NoFaceFoundError, match=r"no face found in the image \(300x200 px\)"):
        DlibDetector().detect(np.full((200, 300, 3), 200, np.uint8))


def test_logmel_loud_frames_have_more_energy():
    fe = LogMel()
    sr = fe.sample_rate
    wav = np.zeros(sr, np.float32)
    wav[int(0.4 * sr) : int(0.6 * sr)] = 0.5 * np.sin(2 * np.pi * 300 * np.arange(int(0.2 * sr)) / sr)
    feats = fe(wav, sr)
    energy = feats.mean(1)
    assert feats.shape == (25, 320)
    assert energy[11:14].min() > energy[:8].max() + 20  # frames 10-14 cover 0.4-0.6 s


def test_procedural_mouth_follows_speech(speech_path):
    fe = LogMel()
    wav = load_audio(speech_path, fe.sample_rate)[: 5 * fe.sample_rate]
    feats = fe(wav, fe.sample_rate)
    ref = Keypoints(mean_face()[None], image_size=(256, 256))
    out = ProceduralGenerator().generate(feats, ref, seed=0).points
    opening = out[:, 66, 1] - out[:, 62, 1]
    energy = feats.mean(1)
    r = np.corrcoef(opening[1:], energy[1:])[0, 1]
    assert r > 0.4, r
    assert opening.std() > 0.5  # it does move
    # seeded: different seed, different head motion; same seed, same output
    other = ProceduralGenerator().generate(feats, ref, seed=1).points
    assert not np.allclose(out[:, 30], other[:, 30])


def test_sketch_draws_on_reference_and_scales():
    img = np.full((100, 200, 3), 200, np.uint8)
    kp = Keypoints(mean_face(100, 200)[None], image_size=(100, 200))
    frame = SketchRenderer(size=400, background="reference").render(kp, img)[0]
    assert frame.shape == (200, 400, 3)
    assert frame[0, 0].tolist() == [100, 100, 100]  # dimmed reference
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        black = SketchRenderer().render(kp, img)[0]
    assert black.shape == (100, 200, 3) and black.max() == 255 and black[0, 0].max() == 0


@pytest.mark.parametrize("lang", ["en", "de", "hi"])
def test_espeak_languages(lang):
    wav, sr = EspeakSynthesizer().synthesize(
        {"en": "Good morning", "de": "Guten Morgen", "hi": "नमस्ते दुनिया"}[lang], lang
    )
    assert len(wav) > 0.3 * sr and np.abs(wav).max() > 0.05


def test_espeak_unknown_language():
    from a2k_toolkit.errors import InputError

    with pytest.raises(InputError, match="no voice or language 'xx-nope'"):
        EspeakSynthesizer().synthesize("hello", "xx-nope")
