"""Audio front-end ``logmel``: log-mel spectrogram in torch, aligned to video frames, computed in chunks.

Each video frame ``t`` gets ``subframes`` mel frames centred at ``t / fps + k / (subframes * fps)``, so feature frame
``t`` covers video frame ``t``; features are ``(T, subframes * n_mels)`` with ``T = ceil(duration * fps)``. The
mel filter bank is librosa's (Slaney), so the result matches ``librosa.feature.melspectrogram`` +
``librosa.power_to_db``.
"""

from __future__ import annotations

import functools

import numpy as np
from pydantic import Field, model_validator

from ..components import AudioFrontend, AudioFrontendParams
from ..hookspecs import hookimpl


@functools.lru_cache(maxsize=8)
def mel_basis(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax).astype(np.float32)


class LogMelParams(AudioFrontendParams):
    n_mels: int = Field(80, ge=8, le=256)
    n_fft: int = Field(512, ge=64)
    win_length: int = Field(400, ge=16, description="analysis window in samples (25 ms at 16 kHz)")
    subframes: int = Field(4, ge=1, le=16, description="mel frames per video frame (4 = 10 ms hop at 25 fps)")
    fmin: float = Field(55.0, ge=0)
    fmax: float = Field(7600.0, gt=0)
    amin: float = Field(1e-10, gt=0)
    chunk_frames: int = Field(1500, ge=1, description="video frames computed per chunk (bounds memory)")

    @model_validator(mode="after")
    def _check(self):
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length ({self.win_length}) must not exceed n_fft ({self.n_fft})")
        if self.fmax <= self.fmin:
            raise ValueError("fmax must be greater than fmin")
        return self


class LogMel(AudioFrontend):
    """Log-mel spectrogram (dB), torch on the pipeline's device, aligned to video frames."""

    name = "logmel"
    Params = LogMelParams
    sample_rate = 16000

    @property
    def feature_shape(self) -> tuple[int, int]:
        return (self.params.subframes, self.params.n_mels)

    def frame_centres(self, num_video_frames: int, sample_rate: int) -> np.ndarray:
        """Sample index of each mel frame's centre, ``(T * subframes,)``."""
        p = self.params
        t = np.arange(num_video_frames * p.subframes) / (p.subframes * p.fps)
        return np.round(t * sample_rate).astype(np.int64)

    def __call__(self, waveform: np.ndarray, sample_rate: int) -> np.ndarray:
        import torch

        p = self.params
        wav = np.asarray(waveform, np.float32).reshape(-1)
        T = self.num_frames(len(wav), sample_rate)
        centres = self.frame_centres(T, sample_rate)
        basis = torch.from_numpy(mel_basis(sample_rate, p.n_fft, p.n_mels, p.fmin, min(p.fmax, sample_rate / 2)))
        basis = basis.to(self.device)
        window = torch.hann_window(p.win_length, periodic=True, device=self.device)
        lpad = (p.n_fft - p.win_length) // 2
        window = torch.nn.functional.pad(window, (lpad, p.n_fft - p.win_length - lpad))
        half = p.n_fft // 2
        out = np.empty((T * p.subframes, p.n_mels), np.float32)
        step = p.chunk_frames * p.subframes
        with torch.inference_mode():
            for i0 in range(0, len(centres), step):
                c = centres[i0 : i0 + step]
                lo, hi = int(c[0]) - half, int(c[-1]) + half
                seg = np.zeros(hi - lo, np.float32)
                a, b = max(lo, 0), min(hi, len(wav))
                if b > a:
                    seg[a - lo : b - lo] = wav[a:b]
                seg_t = torch.from_numpy(seg).to(self.device)
                idx = torch.from_numpy(c - int(c[0])).to(self.device)[:, None] + torch.arange(p.n_fft, device=self.device)
                frames = seg_t[idx] * window
                power = torch.fft.rfft(frames, n=p.n_fft).abs().pow(2)
                mel = power @ basis.T
                db = 10.0 * torch.log10(torch.clamp(mel, min=p.amin))
                out[i0 : i0 + len(c)] = db.float().cpu().numpy()
        return out.reshape(T, p.subframes * p.n_mels)


@hookimpl
def register_audio_frontends(register):
    register(LogMel)
