"""File I/O: images of every channel layout, audio formats through ffmpeg, MP4 writing, atomic writes."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from a2k_toolkit.errors import AudioLoadError, ImageLoadError, InputError
from a2k_toolkit.io import (
    atomic_folder,
    atomic_path,
    load_audio,
    load_image,
    probe_video,
    read_video_frames,
    run_ffmpeg,
    write_video,
)


def test_images_gray_rgba_and_errors(tmp_path, shared_data):
    import cv2

    rgb = load_image(shared_data / "faces" / "obama.jpg")
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    gray = tmp_path / "g.png"
    cv2.imwrite(str(gray), cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    g = load_image(gray)
    assert g.shape == rgb.shape and (g[..., 0] == g[..., 1]).all()
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., 0] = 255  # red, fully transparent -> white
    assert load_image(rgba)[0, 0].tolist() == [255, 255, 255]
    rgba[..., 3] = 255
    assert load_image(rgba)[0, 0].tolist() == [255, 0, 0]
    with pytest.raises(ImageLoadError, match="not found"):
        load_image(tmp_path / "nope.jpg")
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"this is not an image")
    with pytest.raises(ImageLoadError, match="not a supported image"):
        load_image(junk)


def test_audio_from_mp3_and_video_track(shared_data):
    mp3 = load_audio(shared_data / "speech" / "vexpress_intro_tts.mp3", 16000)
    assert 30 < len(mp3) / 16000 < 33
    clip = load_audio(shared_data / "clips" / "pcavs_aldridge.mp4", 16000)
    assert abs(len(clip) / 16000 - 4.48) < 0.1 and np.abs(clip).max() > 0.05


def test_audio_errors(tmp_path):
    with pytest.raises(AudioLoadError, match="not found"):
        load_audio(tmp_path / "x.wav")
    empty = tmp_path / "e.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioLoadError, match="empty"):
        load_audio(empty)
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"\x00\x01garbage" * 100)
    with pytest.raises(AudioLoadError, match="cannot read audio"):
        load_audio(bad)


def test_write_video_exact_frames_fps_audio(tmp_path):
    frames = (np.full((51, 63, 3), i * 5, np.uint8) for i in range(40))  # odd size -> padded
    wav = np.sin(np.linspace(0, 2000, 16000 * 2)).astype(np.float32) * 0.3
    out = tmp_path / "v.mp4"
    assert write_video(out, frames, 25, audio=wav, sample_rate=16000, num_frames=40) == 40
    info = probe_video(out)
    assert info["frames"] == 40 and info["fps"] == 25 and info["width"] == 64 and info["height"] == 52
    assert info["video_codec"] == "h264" and info["pix_fmt"] == "yuv420p" and info["audio_codec"] == "aac"
    assert abs(info["duration"] - 1.6) < 0.1
    decoded = list(read_video_frames(out))
    assert len(decoded) == 40 and abs(int(decoded[20].mean()) - 100) < 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]


def test_write_video_failure_leaves_nothing(tmp_path):
    def frames():
        yield np.zeros((32, 32, 3), np.uint8)
        yield np.zeros((16, 16, 3), np.uint8)  # wrong size

    with pytest.raises(InputError, match="frame 1 has size"):
        write_video(tmp_path / "v.mp4", frames(), 25)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InputError, match="zero frames"):
        write_video(tmp_path / "v.mp4", iter([]), 25)


def test_atomic_path_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_atomic_folder_swaps_in_a_complete_folder_only(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    target = tmp_path / "out"
    with atomic_folder(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(f".out.a2k-{os.getpid()}.") and not any(tmp.iterdir())
        assert stat.S_IMODE(tmp.stat().st_mode) == 0o777 & ~umask  # a plain mkdir's permissions, not mkdtemp's
        (tmp / "a").write_text("1")
    assert os.listdir(tmp_path) == ["out"] and os.listdir(target) == ["a"]
    with pytest.raises(RuntimeError):
        with atomic_folder(target) as tmp:
            (tmp / "a").write_text("2")
            raise RuntimeError("crash")
    assert os.listdir(tmp_path) == ["out"] and (target / "a").read_text() == "1"

    seen = []

    def check(folder):  # refuses a folder holding a file named keep, before the block and before the swap
        seen.append(folder)
        if (folder / "keep").exists():
            raise InputError("would replace keep")

    with atomic_folder(target, check=check) as tmp:
        (tmp / "b").write_text("3")
    assert seen == [target, target] and os.listdir(target) == ["b"]
    with pytest.raises(InputError):
        with atomic_folder(target, check=check) as tmp:
            (target / "keep").write_text("appeared meanwhile")
    assert sorted(os.listdir(target)) == ["b", "keep"] and os.listdir(tmp_path) == ["out"]


def test_atomic_folder_with_a_fixed_aside_name(tmp_path):
    """The checkpoint convention: the old folder waits as .<name>.old between the renames (one left by a crash is
    removed first), the temporary is .<name>.tmp-*."""
    target = tmp_path / "ckpt"
    target.mkdir()
    (target / "w").write_text("old")
    (tmp_path / ".ckpt.old").mkdir()
    with atomic_folder(target, aside=".ckpt.old") as tmp:
        assert tmp.name.startswith(".ckpt.tmp-")
        (tmp / "w").write_text("new")
    assert os.listdir(tmp_path) == ["ckpt"] and (target / "w").read_text() == "new"


def test_run_ffmpeg_reports_errors(tmp_path):
    from a2k_toolkit.errors import A2KError

    with pytest.raises(A2KError, match="ffmpeg failed"):
        run_ffmpeg(["-i", str(tmp_path / "missing.wav"), "-f", "null", "-"])


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_phone_videos_with_a_display_rotation_decode_upright(tmp_path, rotation):
    """Phones store portrait video as landscape frames plus a rotation in the display matrix; ffmpeg decodes it
    upright, so the probe must report the displayed size or every frame would be cut from the wrong byte grid."""
    import subprocess

    from a2k_toolkit.io import ffmpeg_exe

    plain, rotated = tmp_path / "plain.mp4", tmp_path / "rotated.mp4"
    run = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y"]
    subprocess.run(
        [
            *run,
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=64x48:rate=25:duration=0.4",
            "-pix_fmt",
            "yuv420p",
            "-c:v",
            "libx264",
            str(plain),
        ],
        check=True,
    )
    subprocess.run(
        [*run, "-display_rotation:v:0", str(rotation), "-i", str(plain), "-c", "copy", str(rotated)], check=True
    )
    info = probe_video(rotated, count_frames=False)
    assert info["rotation"] % 360 == rotation % 360  # ffmpeg reports 180 as -180
    assert (info["width"], info["height"]) == ((64, 48) if rotation == 180 else (48, 64))
    assert probe_video(plain, count_frames=False)["rotation"] == 0
    upright = list(read_video_frames(rotated))
    frames = list(read_video_frames(plain))
    assert len(upright) == len(frames) == 10
    expected = np.rot90(frames[0], {90: 1, -90: -1, 180: 2}[rotation])
    assert upright[0].shape == expected.shape
    assert np.abs(upright[0].astype(int) - expected).mean() < 2


def test_a_truncated_faststart_mp4_warns_that_frames_are_missing(tmp_path):
    """Issue 16 item 8: half of a faststart MP4 decodes to fewer frames than its header reports; say so."""
    import warnings

    full = tmp_path / "full.mp4"
    frames = [np.full((64, 64, 3), (i * 5) % 256, np.uint8) for i in range(50)]
    write_video(full, frames, fps=25)
    run_ffmpeg(["-i", str(full), "-c", "copy", "-movflags", "+faststart", str(tmp_path / "fast.mp4")])
    data = (tmp_path / "fast.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(list(read_video_frames(tmp_path / "fast.mp4"))) == 50
    with pytest.warns(UserWarning, match=r"decoded \d+ frames but the container reports 2.00 s \(about 50 frames"):
        n = len(list(read_video_frames(cut)))
    assert n < 45


def test_a_ctrl_c_during_the_renames_of_a_set_of_outputs_waits_until_all_are_in(tmp_path):
    import signal

    from a2k_toolkit import files

    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("old a")
    b.write_text("old b")
    renames = []
    real_replace = os.replace

    def replace_and_interrupt_after_the_first(src, dst):
        real_replace(src, dst)
        renames.append(dst)
        if len(renames) == 1:
            os.kill(os.getpid(), signal.SIGINT)  # lands between the two renames

    # Ctrl-C as in a terminal: a suite started in a background job inherits SIGINT ignored
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(files.os, "replace", replace_and_interrupt_after_the_first)
                with files.atomic_paths(a, b) as (ta, tb):
                    ta.write_text("new a")
                    tb.write_text("new b")
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the deferral's handler is gone
    finally:
        signal.signal(signal.SIGINT, previous)
    assert (a.read_text(), b.read_text()) == ("new a", "new b")
    assert len(renames) == 2
