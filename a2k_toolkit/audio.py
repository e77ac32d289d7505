"""Audio input and output: decode any audio or video file to mono float32 at a given sample rate, resample, write WAV.

* WAV, FLAC, OGG and AIFF are read with soundfile, block by block (a stereo file is averaged to mono without ever
  holding the stereo samples whole).
* Everything else (MP3, M4A/AAC, Opus, the audio track of MP4/MOV/MKV/WebM videos, and any file soundfile rejects)
  is decoded by the ffmpeg binary that imageio-ffmpeg ships, at the file's own sample rate; ffmpeg's output is read
  into one growing buffer that becomes the returned array.
* Resampling is done here, by one polyphase resampler for both paths, so a file gives the same samples whichever
  decoder read it.

An empty, corrupt or unsupported file raises :class:`~a2k_toolkit.errors.AudioLoadError` naming the file and what to
do; a file that holds only silence loads, with a :class:`SilentAudioWarning`.
"""

from __future__ import annotations

import re
import struct
import subprocess
import tempfile
import warnings
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np

from .errors import AudioLoadError, InputError
from .ffmpeg import child_argv, ffmpeg_exe
from .files import PathLike, atomic_path

SOUNDFILE_EXTS = frozenset({".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif"})
"""Extensions read with soundfile first (ffmpeg is the fallback)."""

SILENCE_PEAK = 1e-4
"""A waveform whose absolute peak is below this (-80 dBFS) counts as silent."""

SUPPORTED = "wav, flac, ogg, mp3, m4a/aac, opus, or a video file (mp4, mov, mkv, webm) with an audio track"


class SilentAudioWarning(UserWarning):
    """The audio holds only silence: it loads, but the face will not speak."""


# ------------------------------------------------------------------------------------------------------- resampling


def resample(waveform: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Polyphase (Kaiser-windowed FIR) resampling of a mono float32 waveform; returns the input when the rates agree."""
    orig_sr, target_sr = int(orig_sr), int(target_sr)
    if orig_sr <= 0 or target_sr <= 0:
        raise InputError(f"sample rates must be positive, got {orig_sr} -> {target_sr}")
    wav = np.asarray(waveform, dtype=np.float32)
    if orig_sr == target_sr or wav.size == 0:
        return wav
    from scipy.signal import resample_poly

    g = gcd(orig_sr, target_sr)
    out = resample_poly(wav, target_sr // g, orig_sr // g)
    return out.astype(np.float32, copy=False)


# ---------------------------------------------------------------------------------------------------------- loading


def load_audio(path_or_array, sample_rate: int = 16000, *, orig_sample_rate: int | None = None) -> np.ndarray:
    """Mono float32 samples in [-1, 1] at ``sample_rate`` from an audio or video file, or from an array.

    Files: see the module docstring for formats. Arrays: ``(N,)`` mono, or ``(N, C)`` / ``(C, N)`` with up to 8
    channels (averaged); float arrays are taken as they are, integer arrays are scaled from their type's range;
    ``orig_sample_rate`` is the array's rate (default: already ``sample_rate``).
    """
    if isinstance(path_or_array, np.ndarray):
        wav = _array_to_mono(path_or_array)
        wav = resample(wav, orig_sample_rate or sample_rate, sample_rate)
        return _finish(wav, "the waveform", owned=not np.may_share_memory(wav, path_or_array))
    if isinstance(path_or_array, (bytes, bytearray)):
        raise InputError("load_audio takes a file path or a numpy array, not bytes; write the bytes to a file first")
    path = Path(path_or_array).expanduser()
    if not path.exists():
        raise AudioLoadError(f"audio file not found: {path}")
    if not path.is_file():
        raise AudioLoadError(f"{path} is not a file; give an audio file ({SUPPORTED})")
    if path.stat().st_size == 0:
        raise AudioLoadError(f"audio file {path} is empty (0 bytes); give a file that contains speech")
    wav, sr = None, None
    if path.suffix.lower() in SOUNDFILE_EXTS:
        wav, sr = _read_soundfile(path)
    if wav is None:
        wav, sr = _read_ffmpeg(path)
    if wav.size == 0:
        raise AudioLoadError(f"audio file {path} contains no audio samples (a header without data); re-export it")
    wav = resample(wav, sr, sample_rate)
    return _finish(wav, str(path))


def _to_float32(a: np.ndarray) -> np.ndarray:
    """Float arrays as float32; integer arrays scaled from their type's range to [-1, 1]."""
    if a.dtype.kind in "iu":
        info = np.iinfo(a.dtype)
        if a.dtype.kind == "i":
            return a.astype(np.float32) / np.float32(-float(info.min))
        half = (float(info.max) + 1.0) / 2.0
        return (a.astype(np.float32) - np.float32(half)) / np.float32(half)
    if a.dtype.kind != "f":
        raise AudioLoadError(f"expected a float or integer waveform array, got dtype {a.dtype}")
    return np.asarray(a, dtype=np.float32)


def _array_to_mono(arr: np.ndarray) -> np.ndarray:
    a = np.asarray(arr)
    if a.ndim == 2:
        ch_axis = 1 if a.shape[0] >= a.shape[1] else 0
        if a.shape[ch_axis] > 8:
            raise AudioLoadError(
                f"expected a waveform of shape (N,), (N, C) or (C, N) with at most 8 channels, got {a.shape}"
            )
        a = _to_float32(a)
        a = a.mean(axis=ch_axis, dtype=np.float32) if a.shape[ch_axis] > 1 else a.reshape(-1)
    if a.ndim != 1:
        raise AudioLoadError(f"expected a mono or multi-channel waveform, got an array of shape {a.shape}")
    return _to_float32(a)


def _finish(wav: np.ndarray, what: str, *, owned: bool = True) -> np.ndarray:
    """Check for samples and non-finite values, warn on silence, clip to [-1, 1].

    Clipping happens in place when ``owned`` (the array was made here), else on a copy: a caller's array is never
    modified, and never copied when it needs no change.
    """
    if wav.size == 0:
        raise AudioLoadError(f"{what} contains no audio samples")
    peak = max(float(wav.max()), -float(wav.min()))  # no |wav| temporary; NaN propagates
    if not np.isfinite(peak):
        raise AudioLoadError(f"{what} contains NaN or infinite samples")
    if peak < SILENCE_PEAK:
        warnings.warn(
            f"{what} contains only silence (peak {peak:.1e}, below -80 dBFS); the generated face will not speak. "
            "Check the file, or that the right audio track was chosen",
            SilentAudioWarning,
            stacklevel=3,
        )
    if peak > 1.0:
        if not (owned and wav.flags.writeable):
            wav = wav.copy()
        np.clip(wav, -1.0, 1.0, out=wav)
    return wav


def _read_soundfile(path: Path) -> tuple[np.ndarray | None, int | None]:
    """Mono float32 at the file's rate, averaged block by block; ``(None, None)`` if soundfile cannot read it."""
    import soundfile as sf

    try:
        f = sf.SoundFile(str(path))
    except Exception:  # noqa: BLE001 - unreadable for libsndfile: let ffmpeg try
        return None, None
    with f:
        sr, channels = int(f.samplerate), int(f.channels)
        try:
            if channels == 1:
                wav = f.read(dtype="float32", always_2d=False)
            else:
                out = np.empty(max(int(f.frames), 0), np.float32)
                n = 0
                for block in f.blocks(blocksize=1 << 16, dtype="float32", always_2d=True):
                    if n + len(block) > len(out):  # the header under-reported the length
                        out = np.concatenate([out[:n], np.empty(n + len(block), np.float32)])
                    block.mean(axis=1, out=out[n : n + len(block)])
                    n += len(block)
                wav = out[:n]
        except Exception:  # noqa: BLE001 - a corrupt body: let ffmpeg try, it reports the error well
            return None, None
    return np.asarray(wav, np.float32).reshape(-1), sr


# ---------------------------------------------------------------------------------------------------------- ffmpeg


@dataclass(frozen=True)
class AudioStreamInfo:
    """The first audio stream of a media file, as ffmpeg reports it."""

    codec: str
    sample_rate: int
    layout: str  # "mono", "stereo", "5.1(side)", "3 channels", ...
    duration: float | None

    @property
    def channels(self) -> int | None:
        """Channel count for mono/stereo/"N channels" layouts; None for named multichannel layouts."""
        if self.layout == "mono":
            return 1
        if self.layout == "stereo":
            return 2
        m = re.match(r"(\d+) channels", self.layout)
        return int(m[1]) if m else None


def probe_audio(path: PathLike) -> AudioStreamInfo:
    """Facts about the first audio stream of ``path``; :class:`AudioLoadError` if it is unreadable or has none."""
    path = Path(path)
    proc = subprocess.run(
        child_argv([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)]), capture_output=True, check=False
    )  # exits 1 ("At least one output file must be specified") even for a good file; the report is on stderr
    text = proc.stderr.decode("utf-8", "replace")
    if "Invalid data found when processing input" in text or "Error opening input" in text:
        reason = _last_error_line(text)
        raise AudioLoadError(
            f"cannot read audio from {path}: the file is corrupt or not in a supported format ({reason}). "
            f"Supported: {SUPPORTED}"
        )
    line = re.search(r"Stream #\d+:\d+\S*: Audio: (.*)", text)
    if line is None:
        if re.search(r"Stream #\d+:\d+\S*: Video:", text):
            raise AudioLoadError(
                f"{path} has no audio track (only video or image streams); give an audio file or a video with sound"
            )
        raise AudioLoadError(f"{path} has no audio track; give an audio file ({SUPPORTED})")
    stream = re.match(r"([^,\s]+)[^,]*,.*?(\d+) Hz, ([^,]+)", line[1])
    if stream is None:  # an audio stream whose parameters ffmpeg cannot determine: a damaged or fake file
        raise AudioLoadError(
            f"cannot read audio from {path}: the file is corrupt or not in a supported format (ffmpeg cannot determine "
            f"its audio parameters: {line[1].strip()}). Supported: {SUPPORTED}"
        )
    dur = re.search(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)", text)
    duration = int(dur[1]) * 3600 + int(dur[2]) * 60 + float(dur[3]) if dur else None
    return AudioStreamInfo(stream[1].strip(), int(stream[2]), stream[3].strip(), duration)


def _last_error_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "rror" in ln or "nvalid" in ln or "not found" in ln:
            return re.sub(r"^\[[^\]]*\]\s*", "", ln)
    return lines[-1] if lines else "no output from ffmpeg"


def _read_ffmpeg(path: Path) -> tuple[np.ndarray, int]:
    """Decode the first audio stream to mono float32 at its own rate with ffmpeg."""
    info = probe_audio(path)
    n = info.channels
    if n is None:  # a named surround layout: ffmpeg's standard downmix (keeps the dialogue-carrying centre)
        mix = ["-ac", "1"]
    elif n == 1:
        mix = []
    else:  # a plain average, exactly like the soundfile path and like array input
        terms = "+".join(f"{1.0 / n:.10g}*c{i}" for i in range(n))
        mix = ["-af", f"pan=mono|c0={terms}"]
    cmd = [
        ffmpeg_exe(),
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-i",
        str(path),
        "-map",
        "0:a:0",
        "-vn",
        "-sn",
        "-dn",
        *mix,
        "-c:a",
        "pcm_f32le",
        "-f",
        "f32le",
        "pipe:1",
    ]
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(child_argv(cmd), stdout=subprocess.PIPE, stderr=err)
        buf = bytearray()
        try:
            while True:
                chunk = proc.stdout.read(1 << 20)
                if not chunk:
                    break
                buf += chunk  # grows in place (realloc), so the samples are never held twice
        finally:
            proc.stdout.close()
            rc = proc.wait()
        err.seek(0)
        msg = err.read().decode("utf-8", "replace")
    if rc != 0 and not buf:
        raise AudioLoadError(
            f"cannot decode audio from {path}: {_last_error_line(msg)}. The file may be corrupt; supported: {SUPPORTED}"
        )
    if rc != 0:
        warnings.warn(
            f"ffmpeg reported errors decoding {path} ({_last_error_line(msg)}); using the {len(buf) // 4} samples it "
            "could decode. The file may be truncated or damaged",
            UserWarning,
            stacklevel=3,
        )
    usable = len(buf) - len(buf) % 4
    return np.frombuffer(buf, dtype="<f4", count=usable // 4), info.sample_rate


# ------------------------------------------------------------------------------------------------------------ WAV


def write_wav(path: PathLike, waveform: np.ndarray, sample_rate: int, *, subtype: str = "PCM_16") -> None:
    """Write a mono (or ``(N, C)``) waveform as WAV, clipped to [-1, 1] (PCM would wrap around otherwise); atomic."""
    import soundfile as sf

    data = np.clip(np.asarray(waveform, np.float32), -1.0, 1.0)
    with atomic_path(path) as tmp:
        sf.write(str(tmp), data, int(sample_rate), subtype=subtype, format="WAV")


def parse_wav_bytes(data: bytes) -> tuple[np.ndarray, int]:
    """Decode a PCM WAV held in memory, tolerating the bogus sizes of a streamed WAV; returns mono float32 and rate.

    Programs that write WAV to a pipe (``espeak-ng --stdout``, ``sox ... -t wav -``) cannot seek back to fill in the
    RIFF and ``data`` sizes, so they write 0 or a huge placeholder. Here the ``data`` chunk always extends to the end
    of the bytes actually present (cut to whole frames), whatever its size field says.
    """
    mv = memoryview(data)
    if len(mv) < 12 or bytes(mv[0:4]) != b"RIFF" or bytes(mv[8:12]) != b"WAVE":
        raise AudioLoadError("not a WAV stream (no RIFF/WAVE header)")
    pos, fmt = 12, None
    while pos + 8 <= len(mv):
        cid = bytes(mv[pos : pos + 4])
        (size,) = struct.unpack_from("<I", mv, pos + 4)
        body = pos + 8
        if cid == b"fmt ":
            if size < 16 or body + 16 > len(mv):
                raise AudioLoadError("WAV stream has a truncated fmt chunk")
            tag, channels, rate = struct.unpack_from("<HHI", mv, body)
            (bits,) = struct.unpack_from("<H", mv, body + 14)
            if tag == 0xFFFE and size >= 26:  # WAVE_FORMAT_EXTENSIBLE: the real tag opens the sub-format GUID
                (tag,) = struct.unpack_from("<H", mv, body + 24)
            fmt = (tag, channels, rate, bits)
        elif cid == b"data":
            if fmt is None:
                raise AudioLoadError("WAV stream has its data chunk before the fmt chunk")
            tag, channels, rate, bits = fmt
            dtype = {(1, 8): "u1", (1, 16): "<i2", (1, 32): "<i4", (3, 32): "<f4", (3, 64): "<f8"}.get((tag, bits))
            if dtype is None or channels < 1:
                raise AudioLoadError(f"unsupported WAV encoding (format tag {tag}, {bits} bits, {channels} channels)")
            frame = channels * bits // 8
            end = len(mv) if size in (0, 0xFFFFFFFF) or body + size > len(mv) else body + size
            n = (end - body) // frame
            samples = _to_float32(np.frombuffer(mv[body : body + n * frame], dtype=dtype).reshape(n, channels))
            return (samples.mean(axis=1, dtype=np.float32) if channels > 1 else samples[:, 0].copy()), rate
        pos = body + size + (size & 1)
    raise AudioLoadError("WAV stream has no data chunk")


def frame_rms(audio: np.ndarray, sample_rate: int, num_frames: int, fps: float = 25.0) -> np.ndarray:
    """Audio energy per video frame, ``(num_frames,)``: the RMS of the samples in ``[t / fps, (t + 1) / fps)``
    (missing samples past the end count as silence)."""
    wav = np.asarray(audio, np.float64).ravel()
    edges = np.round(np.arange(num_frames + 1) * sample_rate / fps).astype(np.int64)
    need = int(edges[-1])
    if len(wav) < need:
        wav = np.concatenate([wav, np.zeros(need - len(wav))])
    sq = np.concatenate([[0.0], np.cumsum(wav[:need] ** 2)])
    counts = np.maximum(np.diff(edges), 1)
    return np.sqrt(np.maximum(np.diff(sq[edges]), 0.0) / counts)
