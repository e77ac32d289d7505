"""``a2k stream``: a file played through a streaming session in this process (docs/streaming.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from a2k_toolkit.audio import load_audio, probe_audio, resample, write_wav
from a2k_toolkit.cli import main

SAMPLES = Path(__file__).resolve().parents[1] / "a2k_toolkit" / "samples"
SPEECH, FACE = SAMPLES / "speech.wav", SAMPLES / "astronaut.jpg"


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "pipeline.yaml"
    path.write_text(
        "audio: logmel\ndetector: dlib\ngenerator: audio2keypoint\nrenderer: sketch\ndevice: cpu\nseed: 0\n"
    )
    return path


@pytest.fixture(scope="module")
def short_44k(tmp_path_factory) -> Path:
    """Two seconds of the speech sample at 44.1 kHz (a microphone's rate)."""
    path = tmp_path_factory.mktemp("audio") / "speech-44k.wav"
    write_wav(path, resample(load_audio(SPEECH, 16000)[:32000], 16000, 44100), 44100)
    return path


def test_stream_at_full_lookahead_writes_what_generate_writes(tmp_path, config, capsys):
    generated, streamed = tmp_path / "generate.npy", tmp_path / "stream.npy"
    common = ["--image", str(FACE), "--audio", str(SPEECH), "--config", str(config)]
    assert main(["generate", *common, "--keypoints-out", str(generated)]) == 0
    assert main(["stream", *common, "--keypoints-out", str(streamed), "--lookahead-ms", "full"]) == 0
    out = capsys.readouterr().out
    assert "265 frames" in out and "lookahead full" in out and "compute mean" in out
    np.testing.assert_allclose(np.load(streamed), np.load(generated), atol=1e-3)


def test_stream_at_44k_with_a_video(tmp_path, config, short_44k, capsys):
    assert probe_audio(short_44k).sample_rate == 44100
    kp, video = tmp_path / "kp.npz", tmp_path / "out.mp4"
    args = ["stream", "--image", str(FACE), "--audio", str(short_44k), "--config", str(config), "--realtime"]
    assert main([*args, "--keypoints-out", str(kp), "--video-out", str(video), "--lookahead-ms", "120"]) == 0
    out = capsys.readouterr().out
    assert "50 frames" in out and "lookahead 120 ms" in out and "frame latency after its audio" in out
    with np.load(kp) as z:
        assert z[z.files[0]].shape == (50, 68, 2)
    assert video.stat().st_size > 1000 and probe_audio(video).sample_rate > 0  # an MP4 with the speech muxed in


@pytest.mark.parametrize(
    "extra,message",
    [
        ([], "nothing to write"),
        (["--keypoints-out", "KP", "--lookahead-ms", "soon"], "lookahead must be"),
        (["--keypoints-out", "KP", "--chunk-ms", "0"], "--chunk-ms must be positive"),
        (["--keypoints-out", "KP.txt"], "unsupported extension '.txt'"),
        (["--keypoints-out", "KP", "--keypoints-format", "nope"], "nope"),
    ],
)
def test_stream_errors_are_one_line(tmp_path, config, extra, message, capsys):
    extra = [str(tmp_path / "kp.npy") if a == "KP" else str(tmp_path / a) if a == "KP.txt" else a for a in extra]
    code = main(["stream", "--image", str(FACE), "--audio", str(SPEECH), "--config", str(config), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


def test_stream_writes_the_formats_generate_writes(tmp_path, config, short_44k, capsys):
    """--keypoints-out and --keypoints-format as in `a2k generate`: any format of the registry, checked first."""
    from a2k_toolkit import formats

    args = ["stream", "--image", str(FACE), "--audio", str(short_44k), "--config", str(config)]
    assert main([*args, "--keypoints-out", str(tmp_path / "kp.npy")]) == 0
    assert main([*args, "--keypoints-out", str(tmp_path / "kp.csv")]) == 0
    assert main([*args, "--keypoints-out", str(tmp_path / "pts"), "--keypoints-format", "pts"]) == 0
    want = np.load(tmp_path / "kp.npy")
    assert want.shape == (50, 68, 2)
    np.testing.assert_allclose(formats.read(tmp_path / "kp.csv").points, want, atol=1e-3)
    np.testing.assert_allclose(formats.read(tmp_path / "pts", "pts").points, want, atol=1e-3)
    assert "-> " + str(tmp_path / "pts") in capsys.readouterr().out


def test_stream_through_a_server_refuses_a_format_its_path_does_not_name(tmp_path, config, capsys):
    out = ["--keypoints-out", str(tmp_path / "kp.json"), "--url", "ws://127.0.0.1:9/stream"]
    code = main(
        [
            "stream",
            "--image",
            str(FACE),
            "--audio",
            str(SPEECH),
            "--config",
            str(config),
            *out,
            "--keypoints-format",
            "openpose",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "cannot be combined with --url" in err[0], err
    assert not (tmp_path / "kp.json").exists()


def test_stream_without_a_face_is_one_line(tmp_path, config, capsys):
    blank = tmp_path / "blank.png"
    import cv2

    cv2.imwrite(str(blank), np.full((200, 200, 3), 127, np.uint8))
    args = ["--image", str(blank), "--audio", str(SPEECH), "--config", str(config)]
    code = main(["stream", *args, "--keypoints-out", str(tmp_path / "kp.npy")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no face" in err[0], err
