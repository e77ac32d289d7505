"""Audio front-end ``librosa-mel``: the reference log-mel, computed by librosa itself.

Same parameters, frame alignment and output layout as ``logmel`` (see :mod:`a2k_toolkit.builtin.logmel`), but each
chunk goes through ``librosa.feature.melspectrogram`` (``center=False`` on the zero-padded samples) and
``librosa.power_to_db``. It runs on the CPU only and is slower; use it to check ``logmel`` or where torch is not
wanted. It needs a whole number of samples per mel frame (``sample_rate / (subframes * fps)``), as librosa's hop
is an integer.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from ..hookspecs import hookimpl
from .logmel import MelFrontend


class LibrosaMel(MelFrontend):
    """Reference log-mel spectrogram by librosa (CPU), same layout and alignment as ``logmel``."""

    name = "librosa-mel"

    def _mel_db(self, seg: np.ndarray, starts: np.ndarray, sample_rate: int) -> np.ndarray:
        import librosa

        p = self.params
        hop = self.hop(sample_rate)
        if abs(hop - round(hop)) > 1e-9:
            raise ConfigError(
                f"librosa-mel needs a whole number of samples per mel frame, but {sample_rate} Hz / "
                f"({p.subframes} subframes x {p.fps:g} fps) = {hop:.3f}; change subframes or fps, or use `logmel`, "
                "which handles fractional hops"
            )
        out = []
        for row in seg:
            mel = librosa.feature.melspectrogram(
                y=np.ascontiguousarray(row),
                sr=sample_rate,
                n_fft=p.n_fft,
                hop_length=int(round(hop)),
                win_length=p.win_length,
                window="hann",
                center=False,
                power=2.0,
                n_mels=p.n_mels,
                fmin=p.fmin,
                fmax=min(p.fmax, sample_rate / 2),
                htk=False,
                norm="slaney",
            )
            db = librosa.power_to_db(mel, ref=1.0, amin=p.amin, top_db=None)
            out.append(db.T[: len(starts)])
        return np.stack(out).astype(np.float32, copy=False)


@hookimpl
def register_audio_frontends(register):
    register(LibrosaMel)
