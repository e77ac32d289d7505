"""File input and output: images, video, keypoint files (audio: :mod:`a2k_toolkit.audio`, re-exported here). Writes are
atomic (temp file + rename)."""

from __future__ import annotations

import contextlib
import functools
import glob
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from .errors import A2KError, ImageLoadError, InputError
from .keypoints import LAYOUT, Keypoints

PathLike = str | os.PathLike
_UMASK = os.umask(0)
os.umask(_UMASK)

# ---------------------------------------------------------------------------------------------------- atomic writes


# Temporaries carry the writing process's id (``.<stem>.a2k-<pid>.<random><ext>`` next to the output,
# ``a2k-video-<pid>-<random>`` in the temp folder), so a later run can remove those of processes that were killed.
_TEMP_PID = re.compile(r"\.a2k-(\d+)\.")
_VIDEO_TMPDIR_PREFIX = "a2k-video-"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def clean_stale_temporaries(folder: PathLike, stem: str | None = None) -> int:
    """Remove the temporary files that killed processes left in ``folder`` (those of ``stem``'s output only, when
    given): files named ``.<stem>.a2k-<pid>.*`` whose process no longer runs. Returns how many were removed."""
    folder = Path(folder)
    removed = 0
    try:
        candidates = list(folder.glob(f".{glob.escape(stem)}.a2k-*" if stem is not None else ".*.a2k-*"))
    except OSError:
        return 0
    for tmp in candidates:
        m = _TEMP_PID.search(tmp.name[len(stem) + 1 :] if stem is not None else tmp.name)
        if m and tmp.is_file() and not tmp.is_symlink() and not _pid_alive(int(m[1])):
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed += 1
    return removed


def clean_stale_video_dirs(root: PathLike | None = None) -> int:
    """Remove the ``a2k-video-<pid>-*`` folders that killed processes left in the temp folder."""
    import shutil

    root = Path(root or tempfile.gettempdir())
    removed = 0
    try:
        candidates = list(root.glob(f"{_VIDEO_TMPDIR_PREFIX}*-*"))
    except OSError:
        return 0
    for d in candidates:
        pid = d.name[len(_VIDEO_TMPDIR_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and d.is_dir() and not d.is_symlink() and not _pid_alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)
            removed += 1
    return removed


def _temp_beside(path: Path, suffix: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(path.parent, path.stem)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.a2k-{os.getpid()}.", suffix=suffix or path.suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the permissions a plain open() would
    return Path(tmp)


@contextlib.contextmanager
def atomic_path(path: PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed over ``path``, on error removed.

    The temporary file keeps ``path``'s extension (tools such as ffmpeg pick the format from it). Temporaries of
    ``path`` left by killed processes are removed first.
    """
    path = Path(path)
    tmp_path = _temp_beside(path, suffix)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_paths(*paths: PathLike | None) -> Iterator[list[Path | None]]:
    """:func:`atomic_path` for several outputs that belong together: yields one temporary per path (None for a
    None path); only when the block succeeds are they renamed, one right after the other, so a run killed while
    writing leaves every previous output as it was."""
    temps: list[Path | None] = []
    try:
        for p in paths:
            temps.append(None if p is None else _temp_beside(Path(p)))
        yield temps
        for p, tmp in zip(paths, temps):
            if tmp is not None:
                os.replace(tmp, p)
    except BaseException:
        for tmp in temps:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(path: PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


# ----------------------------------------------------------------------------------------------------------- ffmpeg


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary shipped by imageio-ffmpeg."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


@functools.lru_cache(maxsize=1)
def _pdeathsig_prefix() -> tuple[str, ...]:
    if not sys.platform.startswith("linux") or os.environ.get("A2K_NO_PDEATHSIG"):
        return ()
    import shutil

    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return ()
    try:  # util-linux >= 2.33 has --pdeathsig
        ok = subprocess.run([setpriv, "--pdeathsig", "KILL", "--", "true"], capture_output=True, timeout=10).returncode
    except (OSError, subprocess.SubprocessError):
        return ()
    return (setpriv, "--pdeathsig", "KILL", "--") if ok == 0 else ()


def child_argv(argv: list[str]) -> list[str]:
    """``argv`` for a helper process (ffmpeg) that must not outlive this one.

    On Linux the command runs under ``setpriv --pdeathsig KILL``: the kernel kills it when the thread that started
    it dies, even by SIGKILL, so an encoder never keeps writing for a killed run. That needs no ``preexec_fn``
    (which is unsafe in a process with threads, as torch's are). Where ``setpriv`` is missing (or
    ``A2K_NO_PDEATHSIG`` is set) the command runs as is; the callers still kill it on every error and on SIGTERM.
    Start and wait for the child in the same thread (the signal follows the thread, not the process)."""
    return [*_pdeathsig_prefix(), *argv]


def run_ffmpeg(args: list[str], *, input: bytes | None = None, what: str = "ffmpeg") -> bytes:
    """Run ffmpeg with an argument list (never a shell string); raise :class:`A2KError` with its last error lines."""
    proc = subprocess.run(
        child_argv([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", *args]),
        input=input,
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        raise A2KError(f"{what} failed: {' | '.join(tail) or f'ffmpeg exited with code {proc.returncode}'}")
    return proc.stdout


# ------------------------------------------------------------------------------------------------------------ images


def load_image(path_or_array) -> np.ndarray:
    """An RGB uint8 image ``(H, W, 3)`` from a file path or an array (grayscale and RGBA are converted).

    RGBA images are composited over white, so transparent backgrounds do not turn black.
    """
    if isinstance(path_or_array, np.ndarray):
        img = path_or_array
    else:
        import cv2

        path = Path(path_or_array)
        _check_image_file(path)
        data = np.fromfile(str(path), dtype=np.uint8)
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
        if img is None:
            kind = _image_kind(data[:16].tobytes())
            if kind is not None:
                raise ImageLoadError(
                    f"cannot read image {path}: the {kind} file is truncated or corrupt (it could not "
                    "be decoded); copy or export it again"
                )
            raise ImageLoadError(f"cannot read image {path}: not a supported image file (use PNG, JPEG, BMP or WebP)")
        if img.ndim == 3 and img.shape[2] == 4:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
        elif img.ndim == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return to_rgb_uint8(img)


_IMAGE_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"BM", "BMP"),
    (b"GIF8", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


def _image_kind(head: bytes) -> str | None:
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return next((name for magic, name in _IMAGE_MAGIC if head.startswith(magic)), None)


def _check_image_file(path: Path) -> None:
    """Refuse, before reading it, an image path that is not a regular file, or a file over the size limits (bytes;
    pixels from the header, so an enormous image is refused without decoding it)."""
    import stat

    from .limits import limit

    try:
        st = path.stat()
    except FileNotFoundError:
        raise ImageLoadError(f"image file not found: {path}") from None
    except OSError as exc:
        raise ImageLoadError(f"cannot read image {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        what = (
            "a directory"
            if stat.S_ISDIR(st.st_mode)
            else "a FIFO (named pipe)"
            if stat.S_ISFIFO(st.st_mode)
            else "a device"
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
            else "a socket"
            if stat.S_ISSOCK(st.st_mode)
            else "not a regular file"
        )
        raise ImageLoadError(
            f"cannot read image {path}: it is {what}, not an image file; give an image file (PNG, JPEG, BMP or WebP)"
        )
    max_bytes = limit("max_image_bytes")
    if max_bytes and st.st_size > max_bytes:
        raise ImageLoadError(
            f"image {path} is {st.st_size / 2**20:.0f} MiB, over the limit of {max_bytes / 2**20:.0f} "
            "MiB; use a smaller file (or raise A2K_MAX_IMAGE_BYTES)"
        )
    max_pixels = limit("max_image_pixels")
    if max_pixels:
        size, pixels = _header_size(path)
        if pixels is not None and pixels > max_pixels:
            dims = f"{size[0]}x{size[1]} ({pixels / 1e6:.0f} megapixels)" if size else f"{pixels / 1e6:.0f} megapixels"
            raise ImageLoadError(
                f"image {path} is {dims}, over the limit of {max_pixels / 1e6:g} megapixels; "
                "downscale it (a face needs far fewer pixels), or raise A2K_MAX_IMAGE_PIXELS"
            )


def _header_size(path: Path) -> tuple[tuple[int, int] | None, int | None]:
    """``((width, height), pixels)`` from the image's header (Pillow reads only the header); ``(None, None)`` when
    unknown. Pillow refuses very large images itself (DecompressionBombError), with the pixel count only."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a dependency
        return None, None
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's own DecompressionBombWarning: the limit above decides
            with Image.open(path) as im:
                return im.size, im.size[0] * im.size[1]
    except Image.DecompressionBombError as exc:
        m = re.search(r"\((\d+) pixels\)", str(exc))
        return None, int(m[1]) if m else None
    except Exception:  # noqa: BLE001 - unknown or broken header: decoding reports it
        return None, None


def to_rgb_uint8(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8:
        if np.issubdtype(img.dtype, np.floating) and img.size and img.max() <= 1.0:
            img = img * 255.0
        if img.dtype == np.uint16:
            img = img / 257.0
        img = np.clip(img, 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    elif img.ndim == 3 and img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    elif img.ndim == 3 and img.shape[2] == 4:
        alpha = img[:, :, 3:4].astype(np.float32) / 255.0
        img = (img[:, :, :3].astype(np.float32) * alpha + 255.0 * (1 - alpha)).round().astype(np.uint8)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ImageLoadError(f"expected an image of shape (H, W), (H, W, 3) or (H, W, 4), got {img.shape}")
    if img.shape[0] < 8 or img.shape[1] < 8:
        raise ImageLoadError(f"image is too small ({img.shape[1]}x{img.shape[0]} pixels); use at least 64x64")
    return np.ascontiguousarray(img)


def save_image(path: PathLike, image: np.ndarray) -> None:
    import cv2

    path = Path(path)
    ok, buf = cv2.imencode(path.suffix or ".png", cv2.cvtColor(to_rgb_uint8(image), cv2.COLOR_RGB2BGR))
    if not ok:
        raise InputError(f"cannot encode an image as {path.suffix!r}")
    atomic_write_bytes(path, buf.tobytes())


# ------------------------------------------------------------------------------------------------------------- audio
# Audio input and output live in a2k_toolkit.audio; these names stay importable from here (resolved lazily, because
# a2k_toolkit.audio itself builds on atomic_path and ffmpeg_exe above).
_AUDIO_NAMES = ("load_audio", "resample", "write_wav", "probe_audio", "parse_wav_bytes", "SilentAudioWarning")


def __getattr__(name: str):
    if name in _AUDIO_NAMES:
        from . import audio

        return getattr(audio, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ------------------------------------------------------------------------------------------------------------- video


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
    remains. ``atomic=False`` writes straight to ``path`` (for a caller that renames it, see :func:`atomic_paths`).
    """
    from .audio import write_wav  # local: a2k_toolkit.audio imports this module
    from .errors import AudioLoadError

    path = Path(path)
    if not (isinstance(fps, (int, float)) and np.isfinite(fps) and fps > 0):
        raise InputError(f"video frame rate must be a positive number, got {fps!r}")
    if audio is not None and not isinstance(audio, np.ndarray):
        audio_path = Path(audio)
        if not audio_path.is_file():
            raise AudioLoadError(f"audio file to mux not found: {audio_path}")
    elif audio is not None and np.asarray(audio).size == 0:
        raise AudioLoadError("the audio to mux contains no samples; pass audio=None for a silent video")
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
        audio_src = None
        if audio is not None:
            if isinstance(audio, np.ndarray):
                audio_src = os.path.join(tmpdir, "audio.wav")
                write_wav(audio_src, audio, sample_rate)
            else:
                audio_src = str(audio)

        def audio_args(duration: float) -> list[str]:
            # pad the audio with silence so it never ends before the video, and cut it at the video's end
            return [
                "-i",
                audio_src,
                "-map",
                "0:v:0",
                "-map",
                "1:a:0",
                "-af",
                "apad",
                "-c:a",
                "aac",
                "-b:a",
                "128k",
                "-t",
                f"{duration:.6f}",
            ]

        tmp = stack.enter_context(atomic_path(path)) if atomic else path
        # with audio but no known frame count, encode the video alone first, then mux the audio cut to its length
        two_pass = audio_src is not None and num_frames is None
        video_out = os.path.join(tmpdir, "video.mp4") if two_pass else str(tmp)
        cmd = [
            ffmpeg_exe(),
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-s",
            f"{w}x{h}",
            "-r",
            f"{fps}",
            "-i",
            "pipe:0",
            *(audio_args(num_frames / fps) if audio_src is not None and not two_pass else []),
            "-vf",
            "pad=ceil(iw/2)*2:ceil(ih/2)*2",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-crf",
            str(crf),
            "-pix_fmt",
            "yuv420p",
            "-movflags",
            "+faststart",
            "-r",
            f"{fps}",
            video_out,
        ]
        # ffmpeg's messages go to a file, not a pipe nobody reads while frames are written (a full pipe would block)
        log_path = os.path.join(tmpdir, "ffmpeg.log")
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(child_argv(cmd), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log)

        def ffmpeg_message() -> str:
            with open(log_path, "rb") as f:
                text = f.read().decode("utf-8", "replace").strip()[-500:]
            return text or f"ffmpeg exited with code {proc.returncode}"

        count = 0
        try:
            for frame in itertools.chain([first], it):
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
        if num_frames is not None and count != num_frames:
            raise A2KError(f"got {count} frames for {path}, expected {num_frames}; the video was not written")
        if two_pass:
            run_ffmpeg(
                ["-y", "-i", video_out, *audio_args(count / fps), "-c:v", "copy", "-movflags", "+faststart", str(tmp)],
                what=f"muxing the audio into {path}",
            )
    return count


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
    return _parse_ffmpeg_report(text)


def _parse_ffmpeg_report(text: str) -> dict:
    import re

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


# --------------------------------------------------------------------------------------------------- keypoint files


KEYPOINT_EXTENSIONS = (".npy", ".npz", ".json")
VIDEO_EXTENSIONS = (".mp4",)


def save_keypoints(path: PathLike, keypoints: Keypoints, *, atomic: bool = True) -> None:
    """Write keypoints as ``.npy`` (plain float32 array), ``.npz`` or ``.json`` (array + fps, image size, layout).

    ``atomic=False`` writes straight to ``path`` (for a caller that renames it, see :func:`atomic_paths`)."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in KEYPOINT_EXTENSIONS:
        raise InputError(f"unsupported keypoint file extension {ext!r}; use .npy, .npz or .json")
    meta = {"fps": keypoints.fps, "image_size": keypoints.image_size, "layout": keypoints.layout, **keypoints.meta}
    with atomic_path(path) if atomic else contextlib.nullcontext(path) as tmp:
        if ext == ".npy":
            np.save(tmp, keypoints.points)
        elif ext == ".npz":
            np.savez_compressed(tmp, points=keypoints.points, meta=json.dumps(meta))
        else:
            text = json.dumps({**meta, "points": np.round(keypoints.points, 3).tolist()})
            with open(tmp, "wb") as f:
                f.write(text.encode("utf-8"))


def check_output_folder(folder: PathLike, *, what: str = "output folder") -> Path:
    """Refuse, before any work starts, a folder that could not hold new files: a file in its place (or in place of
    a parent), or a folder that is read-only, virtual (``/proc``) or not ours. The nearest existing folder is tested
    with one empty probe file, removed at once; no folder is created."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"cannot write {what}: {folder} is a file, not a folder; choose another path")
    existing = folder.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"cannot write {what}: {existing} is a file, not a folder; choose another path")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".a2k-{os.getpid()}.probe.", dir=existing)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise InputError(
            f"cannot write {what}: the folder {existing} does not accept new files ({reason}); choose a writable folder"
        ) from None
    os.close(fd)
    os.unlink(probe)
    return folder


def check_output_path(path: PathLike, extensions: tuple[str, ...] | None = None, *, what: str = "output") -> Path:
    """Refuse, before any work starts, an output that could not be written: an unsupported extension, a folder or
    special file in its place, a parent that is a file, or a folder that does not accept new files (read-only,
    ``/proc``, no permission). Writes and removes one empty probe file; creates no folder."""
    path = Path(path)
    if extensions is not None and path.suffix.lower() not in extensions:
        ext = f"unsupported extension {path.suffix!r}" if path.suffix else "no extension"
        use = extensions[0] if len(extensions) == 1 else ", ".join(extensions[:-1]) + " or " + extensions[-1]
        raise InputError(f"{what} {path} has {ext}; use {use}")
    if path.is_dir():
        raise InputError(f"{what} {path} is a directory; give a file name")
    if path.exists() and not path.is_file():
        raise InputError(f"{what} {path} exists and is not a regular file (a device, FIFO or socket); give a file name")
    check_output_folder(path.absolute().parent, what=f"{what} {path}")
    return path


def load_keypoints(path: PathLike, *, fps: float = 25.0) -> Keypoints:
    """Read a keypoint file written by :func:`save_keypoints` (``.npy`` files carry no metadata: ``fps`` applies)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"keypoint file not found: {path}")
    ext = path.suffix.lower()
    try:
        if ext == ".npy":
            return Keypoints(np.load(path, allow_pickle=False), fps=fps)
        if ext == ".npz":
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"])) if "meta" in z else {}
                points = z["points"]
        elif ext == ".json":
            meta = json.loads(path.read_text("utf-8"))
            points = np.asarray(meta.pop("points"), np.float32)
        else:
            raise InputError(f"unsupported keypoint file extension {ext!r}; use .npy, .npz or .json")
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"cannot read keypoint file {path}: {exc}") from None
    known = {k: meta.pop(k) for k in ("fps", "image_size", "layout") if k in meta}
    return Keypoints(
        points,
        fps=float(known.get("fps") or fps),
        image_size=tuple(known["image_size"]) if known.get("image_size") else None,
        layout=known.get("layout", LAYOUT),
        meta=meta,
    )
