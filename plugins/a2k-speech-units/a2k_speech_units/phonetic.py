"""Audio front-end ``phonetic``: per-frame viseme (or phone) classes from pocketsphinx's bundled en-us recogniser.

pocketsphinx decodes the audio in *allphone* mode: a phone loop over its en-us acoustic model (continuous-density
HMMs trained on a few thousand speakers of American English) weighted by its bundled phone trigram model. The
recognised phones with their 10 ms frame timings are mapped to :data:`~a2k_speech_units.visemes.VISEMES`
(``units: viseme``, 14 classes) or kept as the 40 :data:`~a2k_speech_units.visemes.PHONES` (``units: phone``).

Row ``t`` holds, for the interval ``[t / fps, (t + 1) / fps)`` that video frame ``t`` shows, the fraction of that
interval each class covers (it sums to 1; one-hot inside a phone, mixed at boundaries). ``smooth_ms`` then blurs the
rows over time with a Gaussian (coarticulation: mouths move towards a shape before its sound). A pocketsphinx frame
``j`` analyses samples ``[160 j, 160 j + 410)`` at 16 kHz, so its label is placed at the window's centre,
``160 j + 205``.

The recogniser is English: speech in another language still comes out as the nearest English phones, an
approximation that is good for the broad mouth shapes (closures, rounding, open vowels) and poor for sounds English
lacks. Phone recognition without a word model is noisy (even on clean English a phone loop gets many phones wrong);
the classes are inputs for a learned model, not a transcript.

Long audio is decoded in ``chunk_seconds`` pieces, each with ``context_seconds`` of audio on either side whose phones
are dropped, so memory stays bounded and cuts do not fall at the edges of kept phones.
"""

from __future__ import annotations

import math
import os
from typing import Literal

import numpy as np
from pydantic import Field

from a2k_toolkit.components import AudioFrontend, AudioFrontendParams

from ._common import MODEL_RATE, frame_bounds, mono_16k, require
from .visemes import PHONES, SILENCE, VISEMES, normalize_phone, phone_to_viseme

HOP = 160  # pocketsphinx frame step at 16 kHz (10 ms)
CENTRE = 205  # sample offset of a frame's window centre (410-sample window)
MIN_SAMPLES = 1600  # decode at least 0.1 s (shorter input is padded with silence)


class PhoneticParams(AudioFrontendParams):
    units: Literal["viseme", "phone"] = Field(
        "viseme", description="'viseme' = 14 mouth-shape classes, 'phone' = the 39 CMU phones + silence"
    )
    smooth_ms: float = Field(0.0, ge=0, le=1000, description="Gaussian blur over time (sigma, ms); 0 = none")
    lw: float = Field(2.0, gt=0, le=30, description="weight of the phone language model against the acoustics")
    chunk_seconds: float = Field(30.0, ge=2, le=3600, description="audio decoded per utterance (bounds memory)")
    context_seconds: float = Field(1.0, ge=0, le=10, description="audio decoded either side of a chunk, then dropped")


class PhoneticFrontend(AudioFrontend):
    """Viseme (mouth-shape) or phone classes per video frame from pocketsphinx's en-us phone recogniser."""

    name = "phonetic"
    Params = PhoneticParams
    sample_rate = MODEL_RATE

    def __init__(self, params=None, **kwargs):
        super().__init__(params, **kwargs)
        self._decoder = None

    @property
    def classes(self) -> tuple[str, ...]:
        """The class of each feature column."""
        return VISEMES if self.params.units == "viseme" else PHONES

    @property
    def feature_shape(self) -> tuple[int]:
        return (len(self.classes),)

    @property
    def decoder(self):
        """A pocketsphinx decoder in allphone mode over the bundled en-us model (created on first use)."""
        if self._decoder is None:
            ps = require("pocketsphinx", "pocketsphinx", "the 'phonetic' audio front-end")
            root = os.path.join(ps.get_model_path(), "en-us")
            self._decoder = ps.Decoder(
                hmm=os.path.join(root, "en-us"),
                allphone=os.path.join(root, "en-us-phone.lm.bin"),
                lm=None,
                lw=self.params.lw,
                loglevel="ERROR",
            )
        return self._decoder

    # -------------------------------------------------------------------------------------------------- phones
    def phones(self, wav16: np.ndarray) -> list[tuple[str, float, float]]:
        """Recognised phones of a 16 kHz waveform as ``(phone, start_s, end_s)``, in order, silence included;
        filler and noise units are reported as ``SIL``."""
        labels = self._frame_labels(wav16)
        out, start = [], 0
        for j in range(1, len(labels) + 1):
            if j == len(labels) or labels[j] != labels[start]:
                out.append((PHONES[labels[start]], start * HOP / MODEL_RATE, j * HOP / MODEL_RATE))
                start = j
        return out

    def _frame_labels(self, wav16: np.ndarray) -> np.ndarray:
        """Index into :data:`PHONES` of every 10 ms pocketsphinx frame, ``(max(1, ceil(N / 160)),)`` int16."""
        p = self.params
        n_frames = max(1, math.ceil(len(wav16) / HOP))
        labels = np.zeros(n_frames, np.int16)  # SIL
        chunk = max(1, round(p.chunk_seconds * MODEL_RATE / HOP))
        ctx = round(p.context_seconds * MODEL_RATE / HOP)
        index = {ph: i for i, ph in enumerate(PHONES)}
        for k0 in range(0, n_frames, chunk):
            k1 = min(k0 + chunk, n_frames)
            a = max(0, k0 - ctx)  # first frame decoded
            seg = wav16[a * HOP : (k1 + ctx) * HOP]
            for word, s, e in self._decode(seg):
                lo, hi = max(a + s, k0), min(a + e + 1, k1)
                if hi > lo:
                    labels[lo:hi] = index[normalize_phone(word)]
        return labels

    def _decode(self, seg: np.ndarray) -> list[tuple[str, int, int]]:
        """``(unit, first frame, last frame)`` of one utterance."""
        pcm = np.zeros(max(len(seg), MIN_SAMPLES), np.int16)
        pcm[: len(seg)] = np.round(np.clip(seg, -1.0, 1.0) * 32766.0).astype(np.int16)
        # +-1 LSB of fixed pseudo-random dither (-95 dBFS): digital silence otherwise gives the recogniser log(0)
        # features, on which it reports phones; the fixed seed keeps the output a function of the input
        pcm += np.random.default_rng(len(pcm)).integers(-1, 2, len(pcm), dtype=np.int16)
        dec = self.decoder
        dec.reinit_feat()  # forget the previous utterance's cepstral mean: the same audio gives the same phones
        dec.start_utt()
        dec.process_raw(pcm.tobytes(), full_utt=True)
        dec.end_utt()
        return [(s.word, int(s.start_frame), int(s.end_frame)) for s in dec.seg()]

    # ------------------------------------------------------------------------------------------------ features
    def __call__(self, waveform: np.ndarray, sample_rate: int) -> np.ndarray:
        """Class fractions ``(T, C)`` float32 per video frame (rows sum to 1), ``T = ceil(duration * fps)``."""
        T = self.num_frames(np.asarray(waveform).shape[-1] if np.ndim(waveform) else 0, sample_rate)
        wav = mono_16k(waveform, sample_rate, self.name)
        labels = self._frame_labels(wav)
        if self.params.units == "viseme":
            to_class = np.array([VISEMES.index(phone_to_viseme(ph)) for ph in PHONES], np.int16)
            labels = to_class[labels]
        C = len(self.classes)
        # sample each frame's interval every ~5 ms and count the classes found there
        bounds = frame_bounds(T, self.fps, MODEL_RATE).astype(np.float64)
        per = max(4, math.ceil(MODEL_RATE / self.fps / 80))
        pos = bounds[:-1, None] + (np.arange(per) + 0.5)[None] / per * np.diff(bounds)[:, None]  # (T, per) samples
        j = np.clip(np.round((pos - CENTRE) / HOP), 0, len(labels) - 1).astype(np.int64)
        out = np.zeros((T, C), np.float32)
        np.add.at(out, (np.repeat(np.arange(T), per), labels[j].reshape(-1)), 1.0 / per)
        if self.params.smooth_ms > 0:
            from scipy.ndimage import gaussian_filter1d

            out = gaussian_filter1d(out, self.params.smooth_ms / 1000 * self.fps, axis=0, mode="nearest")
            out /= np.maximum(out.sum(axis=1, keepdims=True), 1e-12)
        return out.astype(np.float32)


assert PHONES[0] == SILENCE
