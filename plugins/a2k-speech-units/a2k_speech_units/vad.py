"""Audio front-end ``vad``: per-frame voice activity from silero-vad's bundled model, plus relative loudness.

Columns (``feature_shape`` ``(2,)``, or ``(1,)`` with ``energy: false``):

0. **speech probability** in [0, 1]. silero-vad (a small LSTM trained on speech in 6000+ languages and many noise
   conditions) scores 32 ms chunks (512 samples at 16 kHz); the row of video frame ``t`` is the mean of the chunk
   scores over the interval ``[t / fps, (t + 1) / fps)`` that frame shows, each chunk weighted by its overlap.
1. **loudness in dB relative to the clip's speech level**: ``10 log10(mean square)`` over the same interval, minus the
   clip's 95th percentile of those values (but at least ``reference_floor_db`` dBFS, so that a silent or
   near-silent clip is not raised to speech level), clipped to ``[-range_db, +10]``. It is gain-invariant, and
   says how loud a frame is within its clip rather than how loud the recording was.

The model runs on the CPU (it is 2 MB; a GPU would not help) with ``threads`` torch threads, 1 by default: its
tensors are tiny, and more threads only add synchronisation (on a shared 2-core machine 20-30x slower).

By default the clip is streamed through the model chunk by chunk, as silero-vad itself does: memory holds the 16 kHz
waveform, the output and the model's small recurrent state, whatever the length. ``segment_seconds`` instead cuts
long audio into segments that run together as one batch (about 3x faster on a minute of speech); each segment after
the first starts ``warmup_seconds`` early and those outputs are dropped, but the LSTM remembers long enough that
probabilities still differ from the streamed ones near segment starts (measured on real speech with 8 s segments and
a 1 s warm-up: 4 % of chunks differ by more than 0.05, at most by 0.56). So it is off by default.

**Streaming** (:meth:`VADFrontend.stream`, fed 16 kHz audio): each complete 512-sample chunk is scored as it
arrives, by the stream's own copy of the model (so streams do not share a recurrent state, and the front-end's
offline calls are not disturbed), the last partial chunk zero-padded at flush as offline. A frame's row comes once
the chunk holding its end is scored: at most 24 ms after the frame's end at 25 fps (``delay_samples`` 384). The
speech probability then equals offline's with ``segment_seconds`` null, whatever the chunk sizes (a stream always
runs chunk by chunk, so with ``segment_seconds`` set it equals the unsegmented offline values, not the segmented
ones). The loudness column differs from offline: a stream cannot know the clip's speech level, so frame ``t``'s is
the 95th percentile of the frames so far over the last :data:`LEVEL_HISTORY_S` seconds (frame ``t`` included, at
least ``reference_floor_db``). On the bundled 10.6 s speech sample it is within 0.58 dB of offline's after the first
2 s (0.17 dB on average; 1.9 dB at most after the first second, up to 26 dB in it).
"""

from __future__ import annotations

import copy
import math
import os
import warnings
from collections import deque

import numpy as np
from pydantic import Field

from a2k_toolkit.components import AudioFrontend, AudioFrontendParams
from a2k_toolkit.errors import InputError
from a2k_toolkit.streaming import FeatureStream

from ._common import MODEL_RATE, frame_bounds, interval_means, mono_16k, package_dir, torch_threads

CHUNK = 512  # samples per silero-vad step at 16 kHz (32 ms)
BLOCK_FRAMES = 4096  # video frames per block when measuring loudness (bounds the temporaries)
# seconds of frames a stream's speech level looks back over (the toolkit's streamed loudness statistics use the same)
LEVEL_HISTORY_S = 10.0


class VADParams(AudioFrontendParams):
    energy: bool = Field(True, description="add the relative loudness column (dB below the clip's speech level)")
    range_db: float = Field(60.0, gt=0, le=200, description="loudness floor below the clip's speech level, in dB")
    reference_floor_db: float = Field(
        -50.0,
        le=0,
        description="the speech level (95th loudness percentile) is taken as at least this many dBFS, so "
        "silence stays far below 0",
    )
    segment_seconds: float | None = Field(
        None,
        ge=1,
        description="null = one streaming pass over the clip (silero's own use); a number = run segments "
        "this long as one batch, about 3x faster on long audio but the recurrent state differs near segment starts",
    )
    warmup_seconds: float = Field(1.0, ge=0, le=10, description="audio before each segment run to settle the state")
    batch_segments: int = Field(16, ge=1, le=256, description="segments per batch (bounds memory)")
    threads: int | None = Field(1, ge=1, description="torch threads while the model runs; null = leave as set")


class VADFrontend(AudioFrontend):
    """Voice activity (silero-vad, bundled model) and relative loudness per video frame; any language."""

    name = "vad"
    Params = VADParams
    sample_rate = MODEL_RATE

    def __init__(self, params=None, **kwargs):
        super().__init__(params, **kwargs)
        self._model = None

    @property
    def feature_shape(self) -> tuple[int]:
        return (2 if self.params.energy else 1,)

    @property
    def model(self):
        """silero-vad's TorchScript model from the installed wheel, loaded on first use (one per front-end: the
        model keeps its recurrent state between calls)."""
        if self._model is None:
            import torch

            path = os.path.join(package_dir("silero_vad", "the 'vad' audio front-end"), "data", "silero_vad.jit")
            self._model = torch.jit.load(path, map_location="cpu").eval()
        return self._model

    def stream(self) -> VADFeatureStream:
        """A :class:`~a2k_toolkit.streaming.FeatureStream` of these features, fed 16 kHz audio: each 512-sample
        chunk is scored as it arrives by the stream's own copy of the model (its own recurrent state; this
        front-end's is untouched), and a frame's row comes once the chunk holding its end is scored. The speech
        probability equals offline's with ``segment_seconds`` null (a stream always runs chunk by chunk, whatever
        ``segment_seconds`` says); the loudness is relative to the last :data:`LEVEL_HISTORY_S` seconds' level
        instead of the whole clip's (module doc, "Streaming")."""
        return VADFeatureStream(self)

    def __call__(self, waveform: np.ndarray, sample_rate: int) -> np.ndarray:
        """Features ``(T, 2)`` (speech probability, relative loudness dB) float32, ``T = ceil(duration * fps)``."""
        T = self.num_frames(np.asarray(waveform).shape[-1] if np.ndim(waveform) else 0, sample_rate)
        wav = mono_16k(waveform, sample_rate, self.name)
        bounds = frame_bounds(T, self.fps, MODEL_RATE)
        cols = [interval_means(self.chunk_probabilities(wav), CHUNK, bounds)]
        if self.params.energy:
            cols.append(self.relative_loudness(wav, bounds))
        return np.stack(cols, axis=1).astype(np.float32)

    # ------------------------------------------------------------------------------------------ voice activity
    def chunk_probabilities(self, wav16: np.ndarray) -> np.ndarray:
        """Speech probability of every 512-sample chunk ``[i * 512, (i + 1) * 512)`` of a 16 kHz waveform (the last
        chunk zero-padded), ``(ceil(N / 512),)`` float32, at least one chunk."""
        import torch

        p = self.params
        n = max(1, math.ceil(len(wav16) / CHUNK))
        with torch_threads(p.threads), torch.inference_mode(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*not writable.*")  # read only; never written
            if p.segment_seconds is None:
                return self._stream(wav16, n)
            return self._segments(wav16, n)

    def _stream(self, wav16: np.ndarray, n: int) -> np.ndarray:
        import torch

        model = self.model
        model.reset_states()
        x = torch.from_numpy(np.ascontiguousarray(wav16))  # a view: no copy of long audio
        probs = np.empty(n, np.float32)
        whole = len(wav16) // CHUNK
        for i in range(whole):
            probs[i] = float(model(x[None, i * CHUNK : (i + 1) * CHUNK], MODEL_RATE))
        if whole < n:  # the last, partial chunk (or no audio at all): zero-padded
            last = torch.zeros(1, CHUNK)
            last[0, : len(wav16) - whole * CHUNK] = x[whole * CHUNK :]
            probs[whole] = float(model(last, MODEL_RATE))
        return probs

    def _segments(self, wav16: np.ndarray, n: int) -> np.ndarray:
        import torch

        p = self.params
        seg = max(1, round(p.segment_seconds * MODEL_RATE / CHUNK))
        warm = round(p.warmup_seconds * MODEL_RATE / CHUNK)
        starts = list(range(0, n, seg))
        length = min(seg + warm, n + warm)  # chunks run per segment: its warm-up (or, for the first, the audio after)
        probs = np.empty(n, np.float32)
        for g in range(0, len(starts), p.batch_segments):
            group = starts[g : g + p.batch_segments]
            rows = np.zeros((len(group), length * CHUNK), np.float32)
            for r, s in enumerate(group):
                a = 0 if s == 0 else s - warm  # the first segment starts with the audio, like a stream
                piece = wav16[a * CHUNK : (a + length) * CHUNK]
                rows[r, : len(piece)] = piece
            model = self.model
            model.reset_states()
            x = torch.from_numpy(rows)
            out = torch.cat([model(x[:, i * CHUNK : (i + 1) * CHUNK], MODEL_RATE) for i in range(length)], 1).numpy()
            for r, s in enumerate(group):
                off = 0 if s == 0 else warm
                k = min(seg, n - s)
                probs[s : s + k] = out[r, off : off + k]
        return probs

    # ------------------------------------------------------------------------------------------------ loudness
    def relative_loudness(self, wav16: np.ndarray, bounds: np.ndarray) -> np.ndarray:
        """dB of each frame's mean square relative to the clip's speech level, clipped (see the module doc)."""
        p = self.params
        db = self.frame_db(wav16, bounds)
        ref = max(float(np.percentile(db, 95)), p.reference_floor_db)
        return np.clip(db - ref, -p.range_db, 10.0)

    @staticmethod
    def frame_db(wav16: np.ndarray, bounds: np.ndarray) -> np.ndarray:
        """``10 log10(mean square)`` of each frame's samples ``[bounds[t], bounds[t + 1])`` (clipped to the
        waveform; -100 dB for none), ``(T,)`` float64."""
        T = len(bounds) - 1
        ms = np.zeros(T, np.float64)
        n = len(wav16)
        for t0 in range(0, T, BLOCK_FRAMES):
            b = np.clip(bounds[t0 : t0 + BLOCK_FRAMES + 1], 0, n)
            seg = wav16[b[0] : b[-1]].astype(np.float64)
            if seg.size == 0:
                continue
            sums = np.add.reduceat(seg * seg, np.minimum(b[:-1] - b[0], seg.size - 1))
            width = np.diff(b)
            ms[t0 : t0 + len(width)] = np.where(width > 0, sums / np.maximum(width, 1), 0.0)
        return 10 * np.log10(np.maximum(ms, 1e-10))


class VADFeatureStream(FeatureStream):
    """The ``vad`` front-end's features, chunk by chunk (:meth:`VADFrontend.stream`)."""

    def __init__(self, frontend: VADFrontend):
        super().__init__(frontend.feature_dim)
        self.fe, self._ratio = frontend, MODEL_RATE / frontend.fps
        self._model = copy.deepcopy(frontend.model)  # its own recurrent state (the copy shares no tensors)
        self._model.reset_states()
        self._buf, self._buf_start = np.zeros(0, np.float32), 0  # samples from absolute index _buf_start on
        self._probs, self._probs_start = np.zeros(0, np.float32), 0  # chunk scores from chunk _probs_start on
        self._levels: deque[float] = deque(maxlen=max(1, round(LEVEL_HISTORY_S * frontend.fps)))
        # a frame's row waits for the chunk holding its end: the most samples that chunk reaches past a frame's end
        self.delay_samples = int(np.max(-frame_bounds(1000, frontend.fps) % CHUNK))

    @property
    def _chunks(self) -> int:
        return self._probs_start + len(self._probs)

    def _bounds(self, a: int, b: int) -> np.ndarray:
        """``frame_bounds`` of frames ``[a, b)``: the start of each and the end of the last, ``(b - a + 1,)``."""
        return np.round(np.arange(a, b + 1, dtype=np.float64) * self._ratio).astype(np.int64)

    def _push(self, samples: np.ndarray) -> np.ndarray:
        if not np.isfinite(samples).all():
            raise InputError("the audio streamed to the vad front-end has NaN or infinite samples; clean the audio")
        self._buf = np.concatenate([self._buf, samples])
        whole = self.samples_in // CHUNK
        if whole > self._chunks:
            a = self._chunks * CHUNK - self._buf_start
            self._score(self._buf[a : a + (whole - self._chunks) * CHUNK].reshape(-1, CHUNK))
        done = self._chunks * CHUNK  # frames whose end is at or before this are complete
        stop = max(self.frames_out, int(done // self._ratio) - 1)
        while round((stop + 1) * self._ratio) <= done:
            stop += 1
        return self._rows(self.frames_out, stop)

    def _flush(self) -> np.ndarray:
        if not self.samples_in:
            return self._empty()
        rest = self.samples_in - self._chunks * CHUNK
        if rest > 0:  # the last, partial chunk: zero-padded, as offline
            last = np.zeros((1, CHUNK), np.float32)
            last[0, :rest] = self._buf[len(self._buf) - rest :]
            self._score(last)
        return self._rows(self.frames_out, self.fe.num_frames(self.samples_in, MODEL_RATE))

    def _score(self, chunks: np.ndarray) -> None:
        import torch

        out = np.empty(len(chunks), np.float32)
        x = torch.from_numpy(np.ascontiguousarray(chunks))
        with torch_threads(self.fe.params.threads), torch.inference_mode():
            for i in range(len(chunks)):
                out[i] = float(self._model(x[i : i + 1], MODEL_RATE))
        self._probs = np.concatenate([self._probs, out])

    def _rows(self, a: int, b: int) -> np.ndarray:
        """The rows of frames ``[a, b)``, then what no later frame needs is dropped."""
        if b <= a:
            return self._empty()
        p, bounds = self.fe.params, self._bounds(a, b)
        cols = [interval_means(self._probs, CHUNK, bounds - self._probs_start * CHUNK)]
        if p.energy:
            end = np.clip(bounds, 0, self.samples_in) - self._buf_start
            loud = np.empty(b - a)
            for i, db in enumerate(self.fe.frame_db(self._buf[: end[-1]], end)):
                self._levels.append(db)
                ref = max(float(np.percentile(self._levels, 95)), p.reference_floor_db)
                loud[i] = min(max(db - ref, -p.range_db), 10.0)
            cols.append(loud)
        # the next frame starts at bounds[-1]: keep its samples and chunk, and the samples of chunks not yet scored
        keep = min(int(bounds[-1]), self._chunks * CHUNK)
        self._buf, self._buf_start = self._buf[keep - self._buf_start :], keep
        first = max(self._probs_start, min(int(bounds[-1]) // CHUNK, self._chunks - 1))
        self._probs, self._probs_start = self._probs[first - self._probs_start :], first
        return np.stack(cols, axis=1).astype(np.float32)
