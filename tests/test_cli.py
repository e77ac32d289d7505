"""The `a2k` CLI end to end, in a real subprocess: generate on real data, plugins, config, and every user error."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from a2k_toolkit.io import probe_video


def a2k(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "a2k_toolkit.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd
    )


def assert_user_error(proc, *needles):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ")
    for n in needles:
        assert n in proc.stderr, (n, proc.stderr)


def test_version_and_help():
    out = a2k("--version")
    assert out.returncode == 0 and out.stdout.startswith("a2k-toolkit ")
    for cmd in (
        [],
        ["generate"],
        ["plugins"],
        ["plugins", "list"],
        ["config"],
        ["config", "validate"],
        ["config", "schema"],
    ):
        h = a2k(*cmd, "--help")
        assert h.returncode == 0 and "usage: a2k" in h.stdout, cmd


def test_generate_end_to_end_real_face_real_speech(tmp_path, face_image_path, speech_path):
    import soundfile as sf

    kp, mp4 = tmp_path / "out" / "kp.npy", tmp_path / "out" / "out.mp4"
    proc = a2k(
        "generate", "--image", face_image_path, "--audio", speech_path, "--keypoints-out", kp, "--video-out", mp4
    )
    assert proc.returncode == 0, proc.stderr
    duration = sf.info(str(speech_path)).duration
    T = int(np.ceil(duration * 25))
    arr = np.load(kp)
    assert arr.shape == (T, 68, 2) and arr.dtype == np.float32
    info = probe_video(mp4)
    assert info["frames"] == T and info["fps"] == 25 and info["video_codec"] == "h264"
    assert info["pix_fmt"] == "yuv420p" and info["audio_codec"] == "aac"
    assert abs(info["duration"] - T / 25) < 0.1
    # frame 0 is the reference: the detector's keypoints on the image
    from a2k_toolkit.builtin.dlib_detector import DlibDetector
    from a2k_toolkit.io import load_image

    np.testing.assert_allclose(arr[0], DlibDetector().detect(load_image(face_image_path)).points[0], atol=1e-4)


def test_generate_from_text(tmp_path, face_image_path):
    kp = tmp_path / "kp.json"
    proc = a2k("generate", "--image", face_image_path, "--text", "Guten Tag", "--lang", "de", "--keypoints-out", kp)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(kp.read_text())
    assert data["fps"] == 25 and len(data["points"]) > 10


def test_plugins_list_and_config_commands(tmp_path):
    out = a2k("plugins", "list")
    assert out.returncode == 0 and "sketch" in out.stdout and "a2k-toolkit" in out.stdout
    schema = json.loads(a2k("config", "schema").stdout)
    assert "renderer" in schema["properties"]
    good = tmp_path / "good.yaml"
    good.write_text("generator: static\nrenderer: {name: sketch, params: {size: 64}}\n")
    v = a2k("config", "validate", good)
    assert v.returncode == 0 and "valid" in v.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("renderer: {name: sketch, params: {size: tiny}}\n")
    assert_user_error(a2k("config", "validate", bad), "renderer.params.size")


def test_config_validate_refuses_a_missing_checkpoint(tmp_path):
    """Issue 16 item 7: a config whose checkpoint does not exist is not "valid"; one `error:` line naming the key."""
    (tmp_path / "run").mkdir()
    missing = tmp_path / "runs" / "nope"
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"generator: {{name: audio2keypoint, params: {{checkpoint: {missing}}}}}\n")
    proc = a2k("config", "validate", cfg)
    assert_user_error(proc, f"generator.params.checkpoint: {missing} not found")
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stdout == ""
    # a list names the member that is missing; a relative path is read from the current directory
    cfg.write_text("generator: {name: audio2keypoint, params: {checkpoint: [run, gone]}}\n")
    assert_user_error(
        a2k("config", "validate", cfg, cwd=tmp_path), "generator.params.checkpoint[1]: gone not found", str(tmp_path)
    )
    cfg.write_text("generator: {name: audio2keypoint, params: {checkpoint: [run]}}\n")
    ok = a2k("config", "validate", cfg, cwd=tmp_path)
    assert ok.returncode == 0 and "valid" in ok.stdout, ok.stderr
    # the renderer plugin's checkpoint and shots are paths too
    if importlib.util.find_spec("a2k_face_translator") is None:
        return
    face = tmp_path / "face.png"
    face.write_bytes(b"")
    cfg.write_text(f"renderer: {{name: face-translator, params: {{checkpoint: {face}, shots: [{face}, x.png]}}}}\n")
    assert_user_error(a2k("config", "validate", cfg, cwd=tmp_path), "renderer.params.shots[1]: x.png not found")


@pytest.fixture
def io_paths(tmp_path, face_image_path, speech_path):
    return tmp_path, face_image_path, speech_path


def test_error_missing_image(io_paths):
    tmp, _, speech = io_paths
    assert_user_error(
        a2k("generate", "--image", tmp / "none.jpg", "--audio", speech, "--keypoints-out", tmp / "k.npy"),
        "image file not found",
    )


def test_error_missing_audio(io_paths):
    tmp, face, _ = io_paths
    assert_user_error(
        a2k("generate", "--image", face, "--audio", tmp / "none.wav", "--keypoints-out", tmp / "k.npy"),
        "audio file not found",
    )


def test_error_no_face(io_paths):
    import cv2

    tmp, _, speech = io_paths
    blank = tmp / "blank.png"
    cv2.imwrite(str(blank), np.full((240, 320, 3), 180, np.uint8))
    assert_user_error(
        a2k("generate", "--image", blank, "--audio", speech, "--keypoints-out", tmp / "k.npy"), "no face found"
    )
    assert not (tmp / "k.npy").exists()


def test_error_unreadable_audio(io_paths):
    tmp, face, _ = io_paths
    bad = tmp / "bad.wav"
    bad.write_bytes(b"RIFF....WAVEjunkjunkjunk" * 10)
    assert_user_error(
        a2k("generate", "--image", face, "--audio", bad, "--keypoints-out", tmp / "k.npy"), "cannot read audio"
    )


def test_error_bad_config(io_paths):
    tmp, face, speech = io_paths
    cfg = tmp / "c.yaml"
    cfg.write_text("generator: {name: procedural, params: {mouth_open: -3}}\n")
    assert_user_error(
        a2k("generate", "--image", face, "--audio", speech, "--config", cfg, "--keypoints-out", tmp / "k.npy"),
        "generator.params.mouth_open",
    )


def test_error_unknown_plugin(io_paths):
    tmp, face, speech = io_paths
    cfg = tmp / "c.yaml"
    cfg.write_text("renderer: skech\n")
    assert_user_error(
        a2k("generate", "--image", face, "--audio", speech, "--config", cfg, "--video-out", tmp / "o.mp4"),
        "unknown renderer 'skech'",
        "did you mean 'sketch'",
    )


def test_error_nothing_to_write_and_bad_extension(io_paths):
    tmp, face, speech = io_paths
    assert_user_error(a2k("generate", "--image", face, "--audio", speech), "nothing to write")
    assert_user_error(a2k("generate", "--image", face, "--audio", speech, "--video-out", tmp / "o.avi"), ".mp4")


@pytest.mark.parametrize(
    "flag,out,needle",
    [
        ("--keypoints-out", "/proc/kp.npy", "does not accept new files"),
        ("--video-out", "/sys/v.mp4", "does not accept new files"),
        ("--keypoints-out", "out/kp.txt", "unsupported extension '.txt'"),
        ("--keypoints-out", "/dev/null", "no extension"),
        ("--video-out", "out/v.avi", "use .mp4"),
        ("--keypoints-out", "file.txt/kp.npy", "is a file, not a folder"),
        ("--keypoints-out", "readonly/kp.npy", "does not accept new files"),
    ],
)
def test_unwritable_or_unsupported_output_is_refused_before_any_work(tmp_path, flag, out, needle):
    # the image does not exist: an output error (not "image file not found") proves the outputs are checked first
    (tmp_path / "file.txt").write_text("x")
    if out.startswith("readonly"):
        if os.geteuid() == 0:
            pytest.skip("root writes into a read-only folder; /proc and /sys cover unwritable folders")
        (tmp_path / "readonly").mkdir(mode=0o555)
    proc = a2k("generate", "--image", tmp_path / "none.jpg", "--audio", tmp_path / "none.wav", flag, out, cwd=tmp_path)
    assert_user_error(proc, needle, out)
    assert len(proc.stderr.strip().splitlines()) == 1 and "image file not found" not in proc.stderr
    assert not (tmp_path / "out").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"] + (
        ["readonly"] if out.startswith("readonly") else []
    )


def _png_header_only(path, w: int, h: int) -> None:
    """A PNG whose header says ``w x h`` (its pixel data is a stub): a decoder would need w*h*3 bytes."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def test_image_that_is_not_a_file_truncated_or_corrupt_says_what_it_is(tmp_path, sample_image_path, sample_speech_path):
    trunc = tmp_path / "trunc.jpg"
    trunc.write_bytes(sample_image_path.read_bytes()[:30000])
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    cases = {
        trunc: "JPEG file is truncated or corrupt",
        tmp_path: "it is a directory",
        fifo: "FIFO (named pipe)",
        "/dev/zero": "it is a device",
    }
    for image, needle in cases.items():
        proc = a2k("generate", "--image", image, "--audio", sample_speech_path, "--keypoints-out", tmp_path / "k.npy")
        assert_user_error(proc, needle)
        assert "not found" not in proc.stderr and "use PNG, JPEG" not in proc.stderr.split(";")[0]


def test_image_limits_refuse_enormous_images_from_the_header(tmp_path, sample_image_path, sample_speech_path):
    import time

    bomb = tmp_path / "huge.png"
    _png_header_only(bomb, 20000, 20000)
    t0 = time.time()
    proc = a2k("generate", "--image", bomb, "--audio", sample_speech_path, "--keypoints-out", tmp_path / "k.npy")
    assert_user_error(proc, "400 megapixels", "over the limit of 100 megapixels", "A2K_MAX_IMAGE_PIXELS")
    assert time.time() - t0 < 60
    env_run = [
        sys.executable,
        "-m",
        "a2k_toolkit.cli",
        "generate",
        "--image",
        str(sample_image_path),
        "--audio",
        str(sample_speech_path),
        "--keypoints-out",
        str(tmp_path / "k.npy"),
    ]
    for var, value, needle in (
        ("A2K_MAX_IMAGE_PIXELS", "1000", "over the limit of 0.001 megapixels"),
        ("A2K_MAX_IMAGE_BYTES", "1000", "A2K_MAX_IMAGE_BYTES"),
        ("A2K_MAX_IMAGE_BYTES", "lots", "is not a number"),
    ):
        proc = subprocess.run(env_run, capture_output=True, text=True, env={**os.environ, var: value})
        assert_user_error(proc, needle)


def test_default_render_size_is_capped_for_big_photos_and_says_so(tmp_path, sample_image_path, sample_speech_path):
    from a2k_toolkit.audio import load_audio, write_wav

    speech = tmp_path / "one-second.wav"
    write_wav(speech, load_audio(sample_speech_path, 16000)[:16000], 16000)
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"renderer": {"name": "sketch", "params": {"background": "reference"}}}))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "a2k_toolkit.cli",
            "generate",
            "--image",
            str(sample_image_path),
            "--audio",
            str(speech),
            "--config",
            str(cfg),
            "--video-out",
            str(tmp_path / "o.mp4"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "A2K_MAX_RENDER_SIDE": "256"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "rendering at 256 pixels on the longest side" in proc.stderr and "A2K_MAX_RENDER_SIDE" in proc.stderr
    assert max(probe_video(tmp_path / "o.mp4")["width"], probe_video(tmp_path / "o.mp4")["height"]) == 256
