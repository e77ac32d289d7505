"""Audio front-end ``logmel``: log-mel spectrogram (dB) in torch, aligned to video frames, computed in chunks.

Layout: video frame ``t`` gets ``subframes`` mel frames (``S``), so features are ``(T, S * n_mels)`` with
``T = ceil(duration * fps)``, and ``feature_shape`` is ``(S, n_mels)``.

Alignment: video frame ``t`` shows the interval ``[t / fps, (t + 1) / fps)``. It is split into ``S`` equal hops and
mel frame ``k`` of video frame ``t`` is centred on the middle of hop ``k``, at ``(t + (k + 0.5) / S) / fps`` seconds
(sample ``round((t * S + k + 0.5) * hop)`` with ``hop = sample_rate / (S * fps)``; 80 + 160 j at 16 kHz, 25 fps, 4
sub-frames). So the nearest mel frame to any instant lies in the video frame showing that instant, and the analysis
windows of feature frame ``t`` are centred on video frame ``t``. Windows reaching past either end of the audio see
zeros.

Values: the mel filter bank is librosa's (Slaney scale and norm), the window a periodic Hann of ``win_length``
centred in ``n_fft``, power 2, then ``10 * log10(max(mel, amin))``. This equals ``librosa.feature.melspectrogram``
(``center=False`` on the same zero-padded samples) followed by ``librosa.power_to_db(ref=1.0, amin=amin,
top_db=top_db)``; ``tests/test_audio_frontends.py`` pins the agreement (float32 FFT against librosa: within 0.01 dB).

Memory: the waveform is processed ``chunk_frames`` video frames at a time, so the intermediates (frames, spectrum)
are bounded by the chunk, not by the length of the audio; only the output grows with it (an hour at the defaults is
90 000 x 320 float32 = 115 MB).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence

import numpy as np
from pydantic import Field, model_validator

from ..components import AudioFrontend, AudioFrontendParams
from ..errors import InputError
from ..hookspecs import hookimpl


@functools.lru_cache(maxsize=8)
def mel_basis(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """librosa's Slaney mel filter bank ``(n_mels, n_fft // 2 + 1)`` float32 (cached; treat as read-only)."""
    import librosa

    basis = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax).astype(np.float32)
    basis.flags.writeable = False
    return basis


class LogMelParams(AudioFrontendParams):
    n_mels: int = Field(80, ge=8, le=256)
    n_fft: int = Field(512, ge=64)
    win_length: int = Field(400, ge=16, description="analysis window in samples (25 ms at 16 kHz)")
    subframes: int = Field(4, ge=1, le=16, description="mel frames per video frame (4 = 10 ms hop at 25 fps)")
    fmin: float = Field(55.0, ge=0)
    fmax: float = Field(7600.0, gt=0, description="upper mel edge in Hz (capped at half the sample rate)")
    amin: float = Field(1e-10, gt=0, description="power floor before the log (-100 dB)")
    top_db: float | None = Field(
        None,
        gt=0,
        description="if set, floor values at (loudest value - top_db) like librosa.power_to_db's top_db; "
        "off by default so that a frame's features do not depend on the rest of the audio",
    )
    chunk_frames: int = Field(1500, ge=1, description="video frames computed per chunk (bounds memory)")

    @model_validator(mode="after")
    def _check(self):
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length ({self.win_length}) must not exceed n_fft ({self.n_fft})")
        if self.fmax <= self.fmin:
            raise ValueError("fmax must be greater than fmin")
        return self


class MelFrontend(AudioFrontend):
    """Shared framing for the log-mel front-ends: frame centres, chunking, batching, output layout, ``top_db``.

    Subclasses implement :meth:`_mel_db`: dB mel frames for one chunk of padded samples.
    """

    Params = LogMelParams
    log_power = True  # dB mel power: logmel and librosa-mel alike
    sample_rate = 16000

    @property
    def feature_shape(self) -> tuple[int, int]:
        return (self.params.subframes, self.params.n_mels)

    def hop(self, sample_rate: int) -> float:
        """Samples between mel frames: ``sample_rate / (subframes * fps)`` (may be fractional)."""
        return sample_rate / (self.params.subframes * self.params.fps)

    def frame_centres(self, num_video_frames: int, sample_rate: int, first_frame: int = 0) -> np.ndarray:
        """Sample index of each mel frame's centre, ``(T * subframes,)``: ``round((j + 0.5) * hop)``; with
        ``first_frame``, those of video frames ``[first_frame, num_video_frames)`` only."""
        S = self.params.subframes
        j = np.arange(first_frame * S, num_video_frames * S, dtype=np.float64)
        return np.round((j + 0.5) * self.hop(sample_rate)).astype(np.int64)

    def stream(self):
        """A :class:`~a2k_toolkit.streaming.contract.FeatureStream` of these features at ``sample_rate``: a frame's
        row as soon as its last analysis window is inside the audio (11 ms past its end at the defaults), equal to
        the offline rows (with ``top_db`` set, floored at the loudest value so far; see docs/streaming.md)."""
        from .streams import MelFeatureStream

        return MelFeatureStream(self)

    # ------------------------------------------------------------------------------------------------------ API
    def __call__(self, waveform: np.ndarray, sample_rate: int) -> np.ndarray:
        """Features ``(T, S * n_mels)`` float32 for a mono waveform ``(N,)``; ``(B, T, S * n_mels)`` for ``(B, N)``."""
        wav = np.asarray(waveform, dtype=np.float32)
        if wav.ndim not in (1, 2):
            raise InputError(f"expected a waveform (N,) or a batch (B, N), got an array of shape {wav.shape}")
        batch = wav if wav.ndim == 2 else wav[None]
        T = self.num_frames(batch.shape[1], sample_rate)
        out = self._compute(batch, int(sample_rate), T)
        return out if wav.ndim == 2 else out[0]

    def batch(self, waveforms: Sequence[np.ndarray], sample_rate: int) -> list[np.ndarray]:
        """Features for waveforms of different lengths, computed together (zero-padded to the longest); each result
        equals ``self(waveform, sample_rate)``."""
        wavs = [np.asarray(w, dtype=np.float32).reshape(-1) for w in waveforms]
        if not wavs:
            return []
        n = max(len(w) for w in wavs)
        padded = np.zeros((len(wavs), n), np.float32)
        for i, w in enumerate(wavs):
            padded[i, : len(w)] = w
        lengths = [self.num_frames(len(w), sample_rate) for w in wavs]
        db = self._compute(padded, int(sample_rate), max(lengths), apply_top_db=False)
        outs = [db[i, :T] for i, T in enumerate(lengths)]  # views of `db`; top_db per item, after the cut
        for o in outs:
            self._apply_top_db(o)
        return outs

    # -------------------------------------------------------------------------------------------------- internals
    def _compute(self, batch: np.ndarray, sample_rate: int, T: int, *, apply_top_db: bool = True) -> np.ndarray:
        if sample_rate <= 0:
            raise InputError(f"sample rate must be positive, got {sample_rate}")
        p = self.params
        out = np.empty((batch.shape[0], T * p.subframes, p.n_mels), np.float32)
        for i0, starts, seg in self._chunks(batch, self.frame_centres(T, sample_rate)):
            out[:, i0 : i0 + len(starts)] = self._mel_db(seg, starts, sample_rate)
        out = out.reshape(batch.shape[0], T, p.subframes * p.n_mels)
        if apply_top_db:
            for o in out:
                self._apply_top_db(o)
        return out

    def _apply_top_db(self, feats: np.ndarray) -> None:
        if self.params.top_db is not None and feats.size:
            np.maximum(feats, feats.max() - self.params.top_db, out=feats)

    def _chunks(self, batch: np.ndarray, centres: np.ndarray) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """``(first mel frame, frame start offsets within the segment, zero-padded segment (B, L))`` per chunk."""
        p = self.params
        half, n = p.n_fft // 2, batch.shape[1]
        step = p.chunk_frames * p.subframes
        for i0 in range(0, len(centres), step):
            c = centres[i0 : i0 + step]
            lo, hi = int(c[0]) - half, int(c[-1]) - half + p.n_fft
            a, b = max(lo, 0), min(hi, n)
            if lo >= 0 and hi <= n:
                seg = batch[:, lo:hi]  # a view: no copy for chunks inside the audio
            else:
                seg = np.zeros((batch.shape[0], hi - lo), np.float32)
                if b > a:
                    seg[:, a - lo : b - lo] = batch[:, a:b]
            yield i0, c - c[0], seg

    def _mel_db(self, seg: np.ndarray, starts: np.ndarray, sample_rate: int) -> np.ndarray:
        """dB mel frames ``(B, len(starts), n_mels)``; frame ``i`` spans ``seg[:, starts[i] : starts[i] + n_fft]``."""
        raise NotImplementedError


class LogMel(MelFrontend):
    """Log-mel spectrogram (dB), torch on the pipeline's device, aligned to video frames; matches librosa."""

    name = "logmel"

    def _mel_db(self, seg: np.ndarray, starts: np.ndarray, sample_rate: int) -> np.ndarray:
        import torch

        p, dev = self.params, self.device
        with torch.inference_mode():
            basis_t, window = self._tensors(sample_rate, str(dev))
            seg_t = torch.from_numpy(np.ascontiguousarray(seg)).to(dev)
            steps = np.diff(starts)
            if len(starts) == 1 or (steps == steps[0]).all():  # a uniform hop: strided view, no index tensor
                frames = seg_t.unfold(-1, p.n_fft, int(steps[0]) if len(steps) else 1)[:, : len(starts)]
            else:  # a fractional hop rounds to uneven steps: gather
                idx = torch.from_numpy(starts).to(dev)[:, None] + torch.arange(p.n_fft, device=dev)
                frames = seg_t[:, idx]
            spec = torch.fft.rfft(frames * window, n=p.n_fft)
            power = spec.real.square() + spec.imag.square()
            mel = torch.matmul(power, basis_t.T)
            db = torch.log10(torch.clamp(mel, min=p.amin)).mul_(10.0)
            return db.cpu().numpy()

    def _tensors(self, sample_rate: int, device: str):
        """The mel basis and the padded analysis window as tensors on ``device`` (made once per rate and device: a
        stream computes a few frames per push, where making them each time cost more than the frames)."""
        import torch

        cache = self.__dict__.setdefault("_tensor_cache", {})
        if (sample_rate, device) not in cache:
            p = self.params
            basis = mel_basis(sample_rate, p.n_fft, p.n_mels, p.fmin, min(p.fmax, sample_rate / 2))
            with torch.inference_mode():
                basis_t = torch.from_numpy(np.array(basis)).to(device)
                window = torch.hann_window(p.win_length, periodic=True, dtype=torch.float32, device=device)
                lpad = (p.n_fft - p.win_length) // 2
                window = torch.nn.functional.pad(window, (lpad, p.n_fft - p.win_length - lpad))
            cache[sample_rate, device] = (basis_t, window)
        return cache[sample_rate, device]


@hookimpl
def register_audio_frontends(register):
    register(LogMel)
