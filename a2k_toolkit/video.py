"""Video files: encode RGB frames as H.264 MP4 with the audio muxed as AAC (streamed, atomic), probe a media file, and
decode a video's frames. ffmpeg does the work (:mod:`a2k_toolkit.ffmpeg`)."""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from .audio import write_wav
from .errors import A2KError, AudioLoadError, InputError
from .ffmpeg import child_argv, ffmpeg_exe, run_ffmpeg
from .files import PathLike, atomic_path, pid_alive
from .images import to_rgb_uint8

VIDEO_EXTENSIONS = (".mp4",)
# write_video's working folder (the raw audio, a first pass, ffmpeg's log) in the temp folder carries the pid too
_VIDEO_TMPDIR_PREFIX = "a2k-video-"


def clean_stale_video_dirs(root: PathLike | None = None) -> int:
    """Remove the ``a2k-video-<pid>-*`` folders that killed processes left in the temp folder."""
    root = Path(root or tempfile.gettempdir())
    removed = 0
    try:
        candidates = list(root.glob(f"{_VIDEO_TMPDIR_PREFIX}*-*"))
    except OSError:
        return 0
    for d in candidates:
        pid = d.name[len(_VIDEO_TMPDIR_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and d.is_dir() and not d.is_symlink() and not pid_alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)
            removed += 1
    return removed


# ----------------------------------------------------------------------------------------------------------- writing


def write_video(
    path: PathLike,
    frames: Iterable[np.ndarray],
    fps: float,
    *,
    audio: np.ndarray | PathLike | None = None,
    sample_rate: int = 16000,
    num_frames: int | None = None,
    crf: int = 20,
    atomic: bool = True,
) -> int:
    """Encode RGB uint8 frames as H.264 (yuv420p) MP4 at ``fps``, with the audio muxed as AAC; atomic.

    Frames are streamed to ffmpeg one at a time, so memory does not grow with length; every frame must have the
    first frame's size (odd sizes are padded to even). Every frame given is written: the video has exactly as many
    frames as the iterable yields, and ``num_frames``, when given, is checked against that count. The audio (a
    waveform at ``sample_rate`` or an audio/video file) is cut to the video's duration, or padded with silence when
    shorter. Returns the number of frames written. On any error, ``path`` is left as it was and no temporary file
    remains. ``atomic=False`` writes straight to ``path`` (for a caller that renames it, see
    :func:`~a2k_toolkit.files.atomic_paths`).
    """
    path = Path(path)
    _check_video_args(fps, audio)
    it = iter(frames)
    try:
        first = next(it)
    except StopIteration:
        raise InputError("cannot write a video with zero frames") from None
    first = to_rgb_uint8(first)
    h, w = first.shape[:2]
    clean_stale_video_dirs()
    with contextlib.ExitStack() as stack:
        tmpdir = stack.enter_context(tempfile.TemporaryDirectory(prefix=f"{_VIDEO_TMPDIR_PREFIX}{os.getpid()}-"))
        audio_src = _audio_source(audio, sample_rate, tmpdir)
        tmp = stack.enter_context(atomic_path(path)) if atomic else path
        # with audio but no known frame count, encode the video alone first, then mux the audio cut to its length
        two_pass = audio_src is not None and num_frames is None
        video_out = os.path.join(tmpdir, "video.mp4") if two_pass else str(tmp)
        mux = _audio_args(audio_src, num_frames / fps) if audio_src is not None and not two_pass else []
        cmd = _encoder_argv((w, h), fps, crf, mux, video_out)
        count = _encode(cmd, itertools.chain([first], it), (h, w), os.path.join(tmpdir, "ffmpeg.log"), path)
        if num_frames is not None and count != num_frames:
            raise A2KError(f"got {count} frames for {path}, expected {num_frames}; the video was not written")
        if two_pass:
            args = ["-y", "-i", video_out, *_audio_args(audio_src, count / fps), "-c:v", "copy"]
            run_ffmpeg([*args, "-movflags", "+faststart", str(tmp)], what=f"muxing the audio into {path}")
    return count


def _check_video_args(fps: float, audio: np.ndarray | PathLike | None) -> None:
    if not (isinstance(fps, (int, float)) and np.isfinite(fps) and fps > 0):
        raise InputError(f"video frame rate must be a positive number, got {fps!r}")
    if audio is not None and not isinstance(audio, np.ndarray):
        audio_path = Path(audio)
        if not audio_path.is_file():
            raise AudioLoadError(f"audio file to mux not found: {audio_path}")
    elif audio is not None and np.asarray(audio).size == 0:
        raise AudioLoadError("the audio to mux contains no samples; pass audio=None for a silent video")


def _audio_source(audio: np.ndarray | PathLike | None, sample_rate: int, tmpdir: str) -> str | None:
    """The file ffmpeg reads the audio from: the given file, or a waveform written as WAV in ``tmpdir``."""
    if audio is None:
        return None
    if isinstance(audio, np.ndarray):
        wav = os.path.join(tmpdir, "audio.wav")
        write_wav(wav, audio, sample_rate)
        return wav
    return str(audio)


def _audio_args(audio_src: str, duration: float) -> list[str]:
    """ffmpeg arguments muxing ``audio_src`` as AAC, padded with silence so it never ends before the video and cut
    at the video's end (``duration`` seconds)."""
    streams = ["-i", audio_src, "-map", "0:v:0", "-map", "1:a:0"]
    return [*streams, "-af", "apad", "-c:a", "aac", "-b:a", "128k", "-t", f"{duration:.6f}"]


def _encoder_argv(size: tuple[int, int], fps: float, crf: int, audio_args: list[str], out: str) -> list[str]:
    """The ffmpeg command reading raw RGB frames of ``size = (w, h)`` on stdin and writing H.264 to ``out``."""
    w, h = size
    raw_in = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", f"{fps}", "-i", "pipe:0"]
    h264 = ["-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf), "-pix_fmt", "yuv420p"]
    return [
        *(ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y"),
        *raw_in,
        *audio_args,
        *("-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"),
        *h264,
        *("-movflags", "+faststart", "-r", f"{fps}", out),
    ]


def _encode(cmd: list[str], frames: Iterable[np.ndarray], size: tuple[int, int], log_path: str, path: Path) -> int:
    """Run the encoder ``cmd`` and pipe ``frames`` to it, each checked to be ``size = (h, w)``; returns the count.

    ffmpeg's messages go to ``log_path``, not to a pipe nobody reads while frames are written (a full pipe would
    block). On any error ffmpeg is killed and waited for before the error propagates."""
    h, w = size
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(child_argv(cmd), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log)

    def ffmpeg_message() -> str:
        with open(log_path, "rb") as f:
            text = f.read().decode("utf-8", "replace").strip()[-500:]
        return text or f"ffmpeg exited with code {proc.returncode}"

    count = 0
    try:
        for frame in frames:
            frame = to_rgb_uint8(frame)
            if frame.shape[:2] != (h, w):
                raise InputError(
                    f"frame {count} has size {frame.shape[1]}x{frame.shape[0]}, but the video is {w}x{h} "
                    "(every frame must have the first frame's size)"
                )
            proc.stdin.write(frame.tobytes())
            count += 1
        proc.stdin.close()
    except BrokenPipeError:
        proc.kill()
        proc.wait()
        raise A2KError(f"encoding {path} failed: {ffmpeg_message()}") from None
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if proc.wait() != 0:
        raise A2KError(f"encoding {path} failed: {ffmpeg_message()}")
    return count


# ------------------------------------------------------------------------------------------------- probing, reading


def probe_video(path: PathLike, *, count_frames: bool = True) -> dict:
    """Stream facts of a media file from ffmpeg's own report: codecs, size, fps, duration, and (``count_frames``)
    the frame count. Counting decodes the whole video; without it only the header is read and ``frames`` is None.

    ``width`` and ``height`` are the *displayed* size: a video with a rotation in its display matrix (phones record
    portrait video as landscape frames plus a 90 degree rotation) is reported, and decoded by ffmpeg, upright;
    ``rotation`` holds the matrix's angle in degrees (0 when there is none)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"video file not found: {path}")
    # with no output ffmpeg only prints the input's header (and exits non-zero: that is expected)
    decode = ["-map", "0:v:0?", "-f", "null", "-"] if count_frames else []
    proc = subprocess.run(
        child_argv([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), *decode]),
        capture_output=True,
        check=False,
    )
    text = proc.stderr.decode("utf-8", "replace")
    return parse_ffmpeg_report(text)


def parse_ffmpeg_report(text: str) -> dict:
    """The facts :func:`probe_video` reports, from the text ffmpeg prints about its input (its stderr)."""
    info: dict = {
        "video_codec": None,
        "audio_codec": None,
        "width": None,
        "height": None,
        "fps": None,
        "duration": None,
        "frames": None,
        "pix_fmt": None,
        "rotation": 0.0,
    }
    m = re.search(r"Duration: (\d+):(\d+):(\d+\.\d+)", text)
    if m:
        info["duration"] = int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3])
    for line in text.splitlines():
        if "Stream #" in line and "Video:" in line and info["video_codec"] is None:
            info["video_codec"] = line.split("Video:")[1].strip().split()[0].rstrip(",")
            pm = re.search(r"Video: [^,]+(?:\([^)]*\))?[^,]*, (\w+)", line)
            if pm:
                info["pix_fmt"] = pm[1]
            sm = re.search(r", (\d{2,5})x(\d{2,5})", line)
            if sm:
                info["width"], info["height"] = int(sm[1]), int(sm[2])
            fm = re.search(r", ([\d.]+) fps", line)
            if fm:
                info["fps"] = float(fm[1])
        if "Stream #" in line and "Audio:" in line and info["audio_codec"] is None:
            info["audio_codec"] = line.split("Audio:")[1].strip().split()[0].rstrip(",")
    # the first video stream's display matrix (ffmpeg 6+: "Display Matrix: rotation of -90.00 degrees"; older:
    # "displaymatrix: rotation of ..."); ffmpeg applies it when decoding, so the frames come out upright
    rm = re.search(r"(?i)display ?matrix: rotation of (-?[\d.]+) degrees", text)
    if rm and info["width"] is not None:
        info["rotation"] = float(rm[1])
        if round(info["rotation"] / 90) % 2:
            info["width"], info["height"] = info["height"], info["width"]
    frames = re.findall(r"frame=\s*(\d+)", text)
    if frames:
        info["frames"] = int(frames[-1])
    return info


def read_video_frames(
    path: PathLike, fps: float | None = None, size: tuple[int, int] | None = None
) -> Iterator[np.ndarray]:
    """Decode a video to RGB uint8 frames, resampled to ``fps`` (if given) and resized to ``size=(w, h)``."""
    info = probe_video(path, count_frames=False)
    if info["width"] is None:
        raise InputError(f"{path} has no video stream")
    w, h = size or (info["width"], info["height"])
    vf = []
    if fps:
        vf.append(f"fps={fps}")
    if size:
        vf.append(f"scale={w}:{h}")
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(path), "-map", "0:v:0"]
    if vf:
        cmd += ["-vf", ",".join(vf)]
    cmd += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    proc = subprocess.Popen(child_argv(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    nbytes = w * h * 3
    decoded = 0
    try:
        while True:
            buf = proc.stdout.read(nbytes)
            if len(buf) < nbytes:
                break
            decoded += 1
            yield np.frombuffer(buf, np.uint8).reshape(h, w, 3)
        rate = fps or info["fps"]
        expected = round(info["duration"] * rate) if info["duration"] and rate else None
        if expected and decoded < 0.9 * expected and expected - decoded >= 2:  # a truncated or damaged file
            import warnings

            warnings.warn(
                f"{path}: decoded {decoded} frames but the container reports {info['duration']:.2f} s "
                f"(about {expected} frames at {rate:g} fps); the file is probably truncated or damaged, "
                "so the rest of it is missing: re-download or re-export it",
                stacklevel=2,
            )
    finally:
        proc.stdout.close()
        proc.kill()
        proc.wait()
        proc.stderr.close()
