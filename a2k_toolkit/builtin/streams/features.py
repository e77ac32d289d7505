"""Streaming forms of the built-in front-ends (the contract: :class:`~a2k_toolkit.streaming.contract.FeatureStream`).

* :class:`MelFeatureStream` (``logmel``, ``librosa-mel``): a video frame's features are computed as soon as its last
  analysis window is inside the audio received (half an FFT past the frame's end: 11 ms at the defaults), with the
  offline frame centres and the same arithmetic; the rows equal the offline features to float rounding. With
  ``top_db`` set, values are floored at the loudest value *so far* minus ``top_db`` (offline: the whole clip's), so
  rows before the loudest moment may be floored lower than offline; exact with ``top_db`` null (the default).
* :class:`StackFeatureStream` (``stack``): its members' streams, each fed at its own sample rate through a
  :class:`~a2k_toolkit.streaming.resample.StreamResampler`, side by side as offline.
"""

from __future__ import annotations

import math

import numpy as np

from ...errors import InputError
from ...streaming.contract import FeatureStream
from ...streaming.resample import StreamResampler


class MelFeatureStream(FeatureStream):
    """Incremental features of a log-mel front-end (:class:`~a2k_toolkit.builtin.logmel.MelFrontend`)."""

    def __init__(self, frontend):
        super().__init__(frontend.feature_dim)
        p = frontend.params
        self.fe, self.sr = frontend, int(frontend.sample_rate)
        self._S, self._half, self._nfft = p.subframes, p.n_fft // 2, p.n_fft
        self._buf = np.zeros(0, np.float32)  # samples from absolute index _buf_start on
        self._buf_start = 0
        self._loudest = -np.inf  # for top_db
        end = int(frontend.frame_centres(1, self.sr)[-1]) - self._half + self._nfft  # frame 0's last sample
        self.delay_samples = max(0, end - int(round(self.sr / frontend.fps)))
        frontend._mel_db(np.zeros((1, self._nfft), np.float32), np.zeros(1, np.int64), self.sr)  # load it now

    def _complete(self) -> int:
        """Video frames whose every analysis window lies inside the samples received."""
        hop, S, n = self.fe.hop(self.sr), self._S, self.samples_in
        limit = n - self._nfft + self._half  # a window centred at c ends at c - half + n_fft
        j = max(-1, int(math.floor(limit / hop - 0.5)) + 1)  # an upper guess for the last complete mel frame
        while j >= 0 and self.fe.frame_centres((j // S) + 1, self.sr, first_frame=j // S)[j % S] > limit:
            j -= 1
        return (j + 1) // S

    def _push(self, samples: np.ndarray) -> np.ndarray:
        self._buf = np.concatenate([self._buf, samples]) if len(self._buf) else samples.copy()
        return self._frames(self.frames_out, self._complete())

    def _flush(self) -> np.ndarray:
        total = self.fe.num_frames(self.samples_in, self.sr) if self.samples_in else 0
        return self._frames(self.frames_out, total)

    def _frames(self, first: int, stop: int) -> np.ndarray:
        """Feature rows of video frames ``[first, stop)``, chunk by chunk as offline (zeros outside the audio)."""
        if stop <= first:
            return self._empty()
        S, half, n_fft = self._S, self._half, self._nfft
        rows = []
        for a in range(first, stop, self.fe.params.chunk_frames):
            b = min(stop, a + self.fe.params.chunk_frames)
            c = self.fe.frame_centres(b, self.sr, first_frame=a)
            lo, hi = int(c[0]) - half, int(c[-1]) - half + n_fft
            seg = np.zeros(hi - lo, np.float32)
            s0, s1 = max(lo, self._buf_start), min(hi, self.samples_in)
            if s1 > s0:
                seg[s0 - lo : s1 - lo] = self._buf[s0 - self._buf_start : s1 - self._buf_start]
            db = self.fe._mel_db(seg[None], c - c[0], self.sr)[0]
            rows.append(db.reshape(b - a, S * db.shape[-1]))
        out = np.concatenate(rows) if len(rows) > 1 else rows[0]
        if self.fe.params.top_db is not None:
            self._loudest = max(self._loudest, float(out.max()))
            np.maximum(out, self._loudest - self.fe.params.top_db, out=out)
        # drop the samples no later frame's windows reach
        keep = int(self.fe.frame_centres(stop + 1, self.sr, first_frame=stop)[0]) - half
        if keep > self._buf_start:
            drop = min(keep - self._buf_start, len(self._buf))
            self._buf, self._buf_start = self._buf[drop:], self._buf_start + drop
        return out


class StackFeatureStream(FeatureStream):
    """Incremental features of the ``stack`` front-end: each member's stream at its own sample rate, side by side."""

    def __init__(self, stack, open_member):
        super().__init__(stack.feature_dim)
        self.stack, self.sr = stack, int(stack.sample_rate)
        self._layout = stack._plan()
        self._streams = [open_member(m) for m in stack.members]
        self._resamplers = [StreamResampler(self.sr, m.sample_rate) for m in stack.members]
        self._pending: list[list[np.ndarray]] = [[] for _ in stack.members]  # rows not yet returned, per member
        self._last: list[np.ndarray | None] = [None for _ in stack.members]  # each member's last row returned
        self.delay_samples = max(  # in the stack's samples: the member's own delay plus its resampler's
            int(math.ceil(s.delay_samples * self.sr / m.sample_rate)) + r.delay_samples
            for s, r, m in zip(self._streams, self._resamplers, stack.members)
        )

    def _take(self, n: int) -> np.ndarray:
        if n <= 0:
            return self._empty()
        S, shapes = self._layout
        parts = []
        for i, (s, f) in enumerate(shapes):
            rows = np.concatenate(self._pending[i])
            self._pending[i] = [rows[n:]] if len(rows) > n else []
            rows = rows[:n]
            self._last[i] = rows[-1]
            if S == 0:
                parts.append(rows)
            else:
                rows = rows.reshape(n, s, f)
                parts.append(np.repeat(rows, S // s, axis=1) if s != S else rows)
        return np.ascontiguousarray(np.concatenate(parts, axis=-1).reshape(n, -1), dtype=np.float32)

    def _available(self) -> int:
        return min(sum(len(r) for r in rows) for rows in self._pending)

    def _push(self, samples: np.ndarray) -> np.ndarray:
        for i, (stream, rs) in enumerate(zip(self._streams, self._resamplers)):
            self._pending[i].append(stream.push(rs.push(samples)))
        return self._take(self._available())

    def _flush(self) -> np.ndarray:
        T = self.stack.num_frames(self.samples_in, self.sr) if self.samples_in else 0
        need = T - self.frames_out
        for i, (stream, rs, member) in enumerate(zip(self._streams, self._resamplers, self.stack.members)):
            self._pending[i] += [stream.push(rs.flush()), stream.flush()]
            rows = np.concatenate(self._pending[i])
            if abs(len(rows) - need) > 1:
                raise InputError(
                    f"stack member {member.name!r} streamed {stream.frames_out} feature rows for {T} video frames; "
                    "the member breaks the (T, D) front-end contract"
                )
            if len(rows) < need:  # one frame short after resampling rounded the length: repeat the last row
                if not len(rows) and self._last[i] is None:
                    raise InputError(f"stack member {member.name!r} streamed no feature rows for {T} video frames")
                rows = np.concatenate([rows, rows[-1:] if len(rows) else self._last[i][None]])
            self._pending[i] = [rows[:need]]
        return self._take(need)
