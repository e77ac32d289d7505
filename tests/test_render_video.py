"""End to end: `a2k generate ... --video-out OUT.mp4` with `renderer: warp`, and the MP4 writer's guarantees."""

from __future__ import annotations

import math

import numpy as np
import pytest

from a2k_toolkit import io
from a2k_toolkit.cli import main
from a2k_toolkit.errors import A2KError, AudioLoadError, InputError
from a2k_toolkit.keypoints import mouth_opening, reference_iod


def decode(path) -> np.ndarray:
    return np.stack(list(io.read_video_frames(path)))


@pytest.fixture(scope="module")
def warp_video(shared_data, tmp_path_factory):
    """The CLI run once: a real portrait and real speech, `renderer: warp` at 256 px."""
    out = tmp_path_factory.mktemp("warp-cli")
    cfg = out / "warp.yaml"
    cfg.write_text("generator: procedural\nrenderer:\n  name: warp\n  params: {size: 256}\ndevice: cpu\n")
    image = shared_data / "faces" / "obama.jpg"
    audio = shared_data / "speech" / "makeittalk_M6_04_16k.wav"
    video, kps = out / "talk.mp4", out / "talk.npz"
    rc = main(
        [
            "generate",
            "--image",
            str(image),
            "--audio",
            str(audio),
            "--config",
            str(cfg),
            "--video-out",
            str(video),
            "--keypoints-out",
            str(kps),
        ]
    )
    assert rc == 0
    return video, io.load_keypoints(kps), io.load_image(image), io.load_audio(audio)


def test_cli_writes_h264_yuv420p_with_aac_at_the_keypoints_rate(warp_video):
    video, kp, image, audio = warp_video
    info = io.probe_video(video)
    assert info["video_codec"] == "h264" and info["pix_fmt"] == "yuv420p" and info["audio_codec"] == "aac"
    assert (info["width"], info["height"]) == (256, 256)
    assert info["fps"] == pytest.approx(kp.fps) == pytest.approx(25.0)
    expected = math.ceil(round(len(audio) / 16000 * 25, 6))
    assert len(kp) == expected and info["frames"] == expected
    assert info["duration"] == pytest.approx(expected / 25, abs=0.05)
    assert len(decode(video)) == expected
    assert not [p for p in video.parent.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_rendered_face_moves_with_the_keypoints(warp_video):
    import cv2

    video, kp, image, _ = warp_video
    frames = decode(video).astype(float)
    luma = frames.mean(axis=3)
    opening = mouth_opening(kp.points, reference_iod(kp.points))
    assert opening.max() > opening[0] + 0.06  # the speech opens the mouth (by 0.06 IOD: the warp fills it)

    # the mouth: with head motion undone (each frame aligned to the photo on its stable keypoints), the mouth region
    # changes with the opening, and little else does
    ref = kp.points[0]
    stable = [27, 28, 29, 30, 31, 35, 36, 39, 42, 45]
    x0, y0 = ref[48:68].min(0).astype(int) - 3
    x1, y1 = ref[48:68].max(0).astype(int) + 8

    def aligned(t: int) -> np.ndarray:
        m, _ = cv2.estimateAffinePartial2D(kp.points[t, stable], ref[stable])
        return cv2.warpAffine(luma[t].astype(np.float32), m, luma.shape[2:0:-1], flags=cv2.INTER_LINEAR)

    change = np.array([np.abs(aligned(t)[y0:y1, x0:x1] - luma[0, y0:y1, x0:x1]).mean() for t in range(len(kp))])
    order = np.argsort(opening)
    assert change[order[-10:]].mean() > 2 * change[order[:10]].mean() + 3
    assert np.corrcoef(opening, change)[0, 1] > 0.6

    # the head: a patch at each frame's nose keypoint matches the photo's nose better than the patch left behind
    nx, ny = np.round(ref[30]).astype(int)
    nose = luma[0, ny - 8 : ny + 8, nx - 8 : nx + 8]
    moved = np.linalg.norm(kp.points[:, 30] - ref[30], axis=1) > 2.5
    assert moved.sum() >= 5
    follow, stay = [], []
    for t in np.flatnonzero(moved):
        x, y = np.round(kp.points[t, 30]).astype(int)
        follow.append(np.abs(luma[t, y - 8 : y + 8, x - 8 : x + 8] - nose).mean())
        stay.append(np.abs(luma[t, ny - 8 : ny + 8, nx - 8 : nx + 8] - nose).mean())
    assert np.mean(follow) < 0.6 * np.mean(stay)

    # the first frame is the photo, and the background (top corners) stays put up to H.264 noise
    assert np.abs(frames[0] - image).mean() < 4
    for corner in (np.s_[:, :20, :20], np.s_[:, :20, -20:]):
        assert np.abs(frames[corner] - image[corner[1:]]).mean() < 4


@pytest.mark.parametrize("kind", ["rgba-png", "grayscale-jpeg"])
def test_cli_renders_rgba_and_grayscale_photos(shared_data, tmp_path, kind):
    import cv2

    if kind == "rgba-png":
        image = shared_data / "faces" / "327-3275260_leonardo-dicaprio-png-famous-actor.png"
        assert cv2.imread(str(image), cv2.IMREAD_UNCHANGED).shape[2] == 4
    else:
        image = tmp_path / "gray.jpg"
        cv2.imwrite(str(image), cv2.cvtColor(cv2.imread(str(shared_data / "faces" / "obama.jpg")), cv2.COLOR_BGR2GRAY))
    audio = tmp_path / "one-second.wav"
    io.write_wav(audio, io.load_audio(shared_data / "speech" / "makeittalk_M6_04_16k.wav")[:16000], 16000)
    cfg = tmp_path / "warp.yaml"
    cfg.write_text("renderer: {name: warp, params: {size: 128}}\ndevice: cpu\n")
    video = tmp_path / "out.mp4"
    assert (
        main(
            ["generate", "--image", str(image), "--audio", str(audio), "--config", str(cfg), "--video-out", str(video)]
        )
        == 0
    )
    info = io.probe_video(video)
    assert info["frames"] == 25 and (info["width"], info["height"]) == (128, 128) and info["audio_codec"] == "aac"
    first = decode(video)[0].astype(int)
    expected = cv2.resize(io.load_image(image), (128, 128), interpolation=cv2.INTER_AREA)
    assert np.abs(first - expected).mean() < 4  # the photo, in colour space RGB (alpha composited over white)


# ------------------------------------------------------------------------------------------------ write_video


def ramp(n: int, h: int = 48, w: int = 64):
    for i in range(n):
        yield np.full((h, w, 3), (i * 7) % 256, np.uint8)


@pytest.mark.parametrize("num_frames", [None, 40])
@pytest.mark.parametrize("audio_s", [0.5, 3.0])
def test_exact_frame_count_and_duration_whatever_the_audio_length(tmp_path, num_frames, audio_s):
    audio = (0.2 * np.sin(np.arange(int(16000 * audio_s)) * 0.07)).astype(np.float32)
    out = tmp_path / "v.mp4"
    assert io.write_video(out, ramp(40), 25, audio=audio, num_frames=num_frames) == 40
    info = io.probe_video(out)
    assert info["frames"] == 40 and info["audio_codec"] == "aac"
    assert info["duration"] == pytest.approx(1.6, abs=0.03)


def test_odd_sizes_ntsc_rate_and_audio_files(tmp_path, speech_path):
    out = tmp_path / "v.mp4"
    assert io.write_video(out, ramp(30, 47, 61), 29.97, audio=speech_path) == 30
    info = io.probe_video(out)
    assert (info["width"], info["height"]) == (62, 48) and info["fps"] == pytest.approx(29.97)
    assert info["frames"] == 30 and info["duration"] == pytest.approx(30 / 29.97, abs=0.03)


def test_failures_leave_nothing_behind(tmp_path):
    out = tmp_path / "v.mp4"

    def broken():
        yield from ramp(5)
        raise RuntimeError("renderer crashed")

    with pytest.raises(RuntimeError, match="renderer crashed"):
        io.write_video(out, broken(), 25)
    frames = list(ramp(3)) + [np.zeros((20, 20, 3), np.uint8)]
    with pytest.raises(InputError, match="every frame must have the first frame's size"):
        io.write_video(out, frames, 25)
    with pytest.raises(InputError, match="zero frames"):
        io.write_video(out, iter(()), 25)
    with pytest.raises(AudioLoadError, match="not found"):
        io.write_video(out, ramp(3), 25, audio=tmp_path / "missing.wav")
    not_audio = tmp_path / "notes.txt"
    not_audio.write_text("not audio")
    with pytest.raises(A2KError, match="failed"):
        io.write_video(out, ramp(3), 25, audio=not_audio)
    with pytest.raises(A2KError, match="expected 9"):
        io.write_video(out, ramp(3), 25, num_frames=9)
    assert list(tmp_path.iterdir()) == [not_audio]
