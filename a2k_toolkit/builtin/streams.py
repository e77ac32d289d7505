"""Streaming forms of the built-in front-ends and generators (the contract: :mod:`a2k_toolkit.streaming.contract`).

The components' ``stream()`` methods build these; docs/streaming.md says what each one equals.

* :class:`MelFeatureStream` (``logmel``, ``librosa-mel``): a video frame's features are computed as soon as its last
  analysis window is inside the audio received (half an FFT past the frame's end: 11 ms at the defaults), with the
  offline frame centres and the same arithmetic; the rows equal the offline features to float rounding. With
  ``top_db`` set, values are floored at the loudest value *so far* minus ``top_db`` (offline: the whole clip's), so
  rows before the loudest moment may be floored lower than offline; exact with ``top_db`` null (the default).
* :class:`StackFeatureStream` (``stack``): its members' streams, each fed at its own sample rate through a
  :class:`~a2k_toolkit.streaming.resample.StreamResampler`, side by side as offline.
* :class:`WindowedOutputs`: the network's normalised output for features that arrive in chunks. With a lookahead of
  the full window (or more, or ``None``) it runs offline inference's window plan (windows of ``W`` frames every
  ``W - overlap``, the last one end-aligned, cross-faded) and returns a frame once no later window can touch it, so
  the stream equals offline inference; frames within ``W`` of the end are final only at flush. With a shorter
  lookahead ``L`` it runs a window every ``hop`` frames, its newest frame held for its last ``W / 4`` rows, and
  returns frame ``t`` as the blend of the windows whose newest frame is ``0 .. L`` frames after it (weighted by that
  distance plus one), so frame ``t`` depends on the features of frames ``<= t + L`` only.
* :class:`Audio2KeypointStream`: the learned generator's post-processing (anchor, denormalisation, silence gate,
  motion scales, blinks) frame by frame on :class:`WindowedOutputs`.
* :class:`ProceduralStream`, :class:`StaticStream`, :class:`WholeStream` (generate at flush).

Every generator stream here computes frame ``t`` from the features of frames ``< min(t + lookahead + 1, T)``, never
from what else happens to have arrived, so its output does not depend on how the audio was cut into chunks.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import InputError
from ..keypoints import NUM_POINTS, Keypoints, apply_similarity, similarity
from ..motion import BLINK_SHAPE, RIGID, add_jaw_drop, apply_blinks, lead_and_open, rescale_motion, speech_activity
from ..streaming.contract import FeatureStream, KeypointStream
from ..streaming.resample import StreamResampler

# seconds of features the running speech level of the silence gate and procedural's loudness range look back over
LEVEL_HISTORY_S = 10.0


# --------------------------------------------------------------------------------------------------- front-ends


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


# --------------------------------------------------------------------------------------------------- generators


def ramp_weight(k: np.ndarray, length: int) -> np.ndarray:
    """Raised-cosine weight of a frame ``k`` frames from a window's edge (``window_weights``' ramp; 1 from
    ``length`` on)."""
    k = np.asarray(k, np.float64)
    if length <= 0:
        return np.ones_like(k)
    return np.where(k < length, 0.5 - 0.5 * np.cos(math.pi * (k + 1) / (length + 1)), 1.0)


class WindowedOutputs:
    """The generator network's normalised output ``(136,)`` per frame for features that arrive in chunks (see the
    module docstring). ``runner`` is a :class:`~a2k_toolkit.models.inference.WindowedRunner`; ``push`` and ``flush``
    return the frames ``(n, 136)`` float32 that are final, in order.

    With a lookahead ``L`` shorter than the window ``W``, a window ends at every ``hop``-th frame (``hop`` at most
    ``L + 1``, so that each frame has one ending ``0 .. L`` frames after it; at flush one more ends at the last
    frame). A window holds the ``W - W / 4`` newest frames followed by ``W / 4`` copies of the newest (the frames
    before the stream's start taken as copies of its first): the network's output is least reliable at a window's
    edge, where its convolutions run out of input, and a held newest frame there was measured to give a closer mouth
    than putting the newest frame at the edge (docs/streaming.md). Frame ``t`` is the blend of the windows that end
    ``p = 0 .. L`` frames after it (and not past the end), weighted by ``p + 1`` (the more audio after it, the more
    weight) and by the raised-cosine ramp over the first ``overlap`` frames of a window that starts inside the
    stream."""

    #: the default hop: 1 below this lookahead (frames), 2 from it on (measured: within 0.01 of hop 1's lip sync there,
    #: for half the network's work; below it hop 2 lost up to 0.04)
    HOP_2_FROM = 5

    def __init__(self, runner, reference_n: np.ndarray, lookahead: int | None, hop: int | None = None):
        self.runner, self.ref_n = runner, reference_n
        self.W, self.ov = runner.window, runner.overlap
        self.full = lookahead is None or lookahead >= self.W
        self.lookahead = self.W if self.full else int(lookahead)
        if hop is None:
            hop = 1 if self.lookahead < self.HOP_2_FROM else 2
        self.hop = max(1, self.W - self.ov) if self.full else max(1, min(int(hop), self.lookahead + 1))
        self.pad = self.W // 4  # sliding: copies of the newest frame at a window's end
        self.F = 0  # feature rows received
        self.done = 0  # frames returned
        self._feats: np.ndarray | None = None  # rows from absolute index _fstart on
        self._fstart = 0
        self._first: np.ndarray | None = None  # row 0, the padding before the stream's start
        self._next = 0  # full: the next regular window start not computed yet
        self._acc = np.zeros((0, 136), np.float32 if self.full else np.float64)  # frames [done, ...)
        self._wsum = np.zeros(0, np.float32 if self.full else np.float64)

    def _rows(self, a: int, b: int) -> np.ndarray:
        rows = self._feats[max(a, 0) - self._fstart : b - self._fstart]
        return rows if a >= 0 else np.concatenate([np.repeat(self._first[None], -a, 0), rows])

    def _grow(self, stop: int) -> None:
        n = stop - self.done - len(self._acc)
        if n > 0:
            self._acc = np.concatenate([self._acc, np.zeros((n, 136), self._acc.dtype)])
            self._wsum = np.concatenate([self._wsum, np.zeros(n, self._wsum.dtype)])

    def _run(self, spans: list[tuple[int, int]]) -> list[np.ndarray]:
        return self.runner.run([(self._rows(a, b), self.ref_n) for a, b in spans]) if spans else []

    def _emit(self, stop: int) -> np.ndarray:
        n = stop - self.done
        if n <= 0:
            return np.zeros((0, 136), np.float32)
        out = self._acc[:n] / self._wsum[:n, None]
        self._acc, self._wsum = self._acc[n:], self._wsum[n:]
        self.done = stop
        return out.astype(np.float32, copy=False)

    def _trim(self, keep_from: int) -> None:
        drop = keep_from - self._fstart
        if drop > 0:
            self._feats, self._fstart = self._feats[drop:], keep_from

    def push(self, features: np.ndarray) -> np.ndarray:
        old = self.F
        if self._feats is None:
            self._feats, self._first = features.copy(), features[0].copy()
        else:
            self._feats = np.concatenate([self._feats, features])
        self.F += len(features)
        if self.full:
            starts = []
            while self._next + self.W < self.F:  # in the plan of every length >= F, with a ramp out (T > s + W)
                starts.append(self._next)
                self._next += self.hop
            self._blend_full(starts, self.F + 1)
            out = self._emit(max(self.done, self.F - self.W))  # no end-aligned window can reach these
            self._trim(max(0, self.F - self.W))
        else:
            first = (old // self.hop + 1) * self.hop
            self._blend_sliding(list(range(first, self.F + 1, self.hop)))
            out = self._emit(max(self.done, self.F - self.lookahead))
            self._trim(max(0, self.F - (self.W - self.pad)))  # where a window ending at the last frame starts
        return out

    def flush(self) -> np.ndarray:
        T = self.F
        if T == 0:
            return np.zeros((0, 136), np.float32)
        if self.full:
            from ..models.windows import window_plan

            # the plan's windows not computed yet: regular ones from _next on, and the end-aligned one
            todo = [s for s in window_plan(T, self.W, self.ov) if not (s % self.hop == 0 and s < self._next)]
            self._blend_full(todo, T)
        elif T % self.hop:
            self._blend_sliding([T])  # a window ending at the last frame, for the frames not returned yet
        return self._emit(T)

    def _blend_full(self, starts: list[int], T: int) -> None:
        """Offline inference's blend (``WindowedRunner.run``): the same weights, added in the same order, with the
        same float32 arithmetic. ``T`` is the sequence length, or more than any window's end while it is unknown."""
        from ..models.windows import window_weights

        for s, y in zip(starts, self._run([(s, min(s + self.W, T)) for s in starts])):
            n = min(self.W, T - s)
            self._grow(s + n)
            w = window_weights(self.W, self.ov, ramp_in=s > 0, ramp_out=s + self.W < T)[:n]
            i = s - self.done
            self._acc[i : i + n] += y[:n] * w[:, None]
            self._wsum[i : i + n] += w

    def _blend_sliding(self, ends: list[int]) -> None:
        """Windows whose newest frame is ``E - 1`` for each ``E`` of ``ends``; each adds to the frames not returned
        yet that it ends ``0 .. lookahead`` frames after."""
        L, n = self.lookahead, self.W - self.pad  # n: frames of the stream in a window
        self._grow(self.F)
        wins = [np.concatenate([self._rows(E - n, E), np.repeat(self._rows(E - 1, E), self.pad, 0)]) for E in ends]
        ys = self.runner.run([(w, self.ref_n) for w in wins]) if wins else []
        for E, y in zip(ends, ys):
            t = np.arange(max(self.done, E - 1 - L), E)
            pos = t - (E - n)  # the frame's row in the window
            w = (E - t).astype(np.float64) * (ramp_weight(pos, self.ov) if E > n else 1.0)
            self._acc[t - self.done] += w[:, None] * y[pos]
            self._wsum[t - self.done] += w


class BlinkTrack:
    """:func:`~a2k_toolkit.motion.blink_schedule` frame by frame: the same draws from the same generator in
    the same order, so the same closures. (Offline draws blinks while their time is before the clip's end; a stream
    that returns the last two frames before it knows the end -- a lookahead under 2 frames -- may show a blink drawn
    just past the end in them.)"""

    def __init__(self, interval: float, fps: float, rng: np.random.Generator):
        self.interval, self.fps, self.rng = interval, fps, rng
        self._t = rng.uniform(0.5, 1.5) * interval * fps
        self._centres: list[int] = []

    def closing(self, start: int, stop: int, total: int | None = None) -> np.ndarray:
        """Eyelid closure of frames ``[start, stop)``; ``total`` is the stream's length once known."""
        while self._t < stop + 2 and (total is None or self._t < total):
            self._centres.append(int(self._t))
            self._t += self.rng.uniform(0.6, 1.4) * self.interval * self.fps
        out = np.zeros(stop - start)
        for c in self._centres:
            for k, v in zip(range(-2, 3), BLINK_SHAPE):
                if 0 < c + k and start <= c + k < stop:
                    out[c + k - start] = max(out[c + k - start], v)
        self._centres = [c for c in self._centres if c + 2 >= stop]
        return out


def _gate(points: np.ndarray, reference: np.ndarray, weight: np.ndarray) -> None:
    """The silence gate's blend (``close_mouth_in_silence``): each frame's mouth towards the reference's, carried to
    the frame's head pose, with weight ``1 - weight``; in place."""
    t = np.flatnonzero(weight < 1.0)
    if len(t) == 0:
        return
    a, b = similarity(np.asarray(reference[RIGID], np.float64), np.asarray(points[t, RIGID], np.float64))
    rest = apply_similarity(reference[48:68], a, b)
    w = weight[t, None, None]
    points[t, 48:68] = w * points[t, 48:68] + (1.0 - w) * rest


class FeatureHistory:
    """The feature rows a stream may still need: from ``keep`` frames before the first frame not returned (and at
    least ``history`` frames before the newest row)."""

    def __init__(self):
        self.rows: np.ndarray | None = None
        self.start = 0  # absolute index of rows[0]

    @property
    def stop(self) -> int:
        return self.start + (0 if self.rows is None else len(self.rows))

    def add(self, features: np.ndarray) -> None:
        self.rows = features.copy() if self.rows is None else np.concatenate([self.rows, features])

    def get(self, a: int, b: int) -> np.ndarray:
        return self.rows[a - self.start : b - self.start]

    def trim(self, keep_from: int) -> None:
        drop = keep_from - self.start
        if drop > 0 and self.rows is not None:
            self.rows, self.start = self.rows[drop:], keep_from


class EnergyTrack:
    """The loudness-driven mouth opening (:func:`~a2k_toolkit.motion.loudness_opening`, ``procedural``'s
    mouth and ``audio2keypoint``'s ``energy_mouth``) frame by frame with a lookahead ``L``: frame ``t``'s from the
    features up to frame ``t + L``, as in :class:`ProceduralStream` (the loudness range of the last
    :data:`LEVEL_HISTORY_S` seconds, scaled down over the first :data:`RAMP_FRAMES` frames; the smoothing's edge is
    the newest feature)."""

    REACH = 4  # frames before a frame that its opening reaches (the lead, 1, and the smoothing's radius, 3)
    RAMP_FRAMES = 25  # the loudness range of fewer frames than this is unsure: the activity is scaled down by it

    def __init__(self, lookahead: int, fps: float, lead_frames: int = 1):
        self.lookahead, self.lead = int(lookahead), int(lead_frames)
        self.history = FeatureHistory()
        self._level_frames = max(self.lookahead + self.REACH + 1, int(round(LEVEL_HISTORY_S * fps)))

    def add(self, features: np.ndarray) -> None:
        self.history.add(features)

    def opening(self, t0: int, n: int, frames_in: int, total: int | None) -> np.ndarray:
        """The opening ``(n,)`` of frames ``[t0, t0 + n)`` with ``frames_in`` feature rows received (``total`` at
        flush); frames before ``t0`` are not asked again."""
        end = frames_in if total is None else total
        out = np.zeros(n)
        for i, t in enumerate(range(t0, t0 + n)):
            stop = min(t + self.lookahead + 1, end)
            start = max(0, min(t - self.REACH, stop - self._level_frames))
            act = speech_activity(self.history.get(start, stop)) * min(1.0, stop / self.RAMP_FRAMES)
            out[i] = 0.0 if t == 0 else lead_and_open(act, self.lead)[t - start]
        nxt = t0 + n
        self.history.trim(max(0, min(nxt - self.REACH, min(nxt + self.lookahead + 1, frames_in) - self._level_frames)))
        return out


class Audio2KeypointStream(KeypointStream):
    """The ``audio2keypoint`` generator frame by frame: :class:`WindowedOutputs`, then the post-processing of
    ``generate`` on each final frame. ``anchor`` is ``anchor_start`` and ``activity`` is ``voice_activity`` of the
    generator's module; ``hop`` the frames between windows when the lookahead is shorter than the window (``None``:
    :attr:`WindowedOutputs.HOP_2_FROM`'s rule).

    With the full lookahead every step equals offline, except the silence gate (off by default): its speech level is
    the 95th loudness percentile of the last :data:`LEVEL_HISTORY_S` seconds up to frame ``t + lookahead`` (offline:
    of the whole clip)."""

    def __init__(
        self, generator, reference: Keypoints, lookahead: int | None, seed: int | None, *, anchor, activity, hop=None
    ):
        from ..models.inference import WindowedRunner

        info, p = generator.info, generator.params
        self.info, self.params = info, p
        self.ref = np.asarray(reference.points[0][:, :2], np.float32)
        self.ref_n = info.normalizer.normalize(self.ref[None], self.ref)[0]
        self.dim = info.feature_shape[0] * info.feature_shape[1]
        runner = WindowedRunner(generator.net, info.window, p.overlap, p.batch_size, p.precision, fast=p.fast)
        if hop is not None and (isinstance(hop, bool) or not isinstance(hop, (int, np.integer)) or hop < 1):
            raise InputError(f"hop must be a whole number of frames >= 1 (or None: the default), got {hop!r}")
        self.net_out = WindowedOutputs(runner, self.ref_n, lookahead, hop)
        runner.run([(np.zeros((info.window, self.dim), np.float32), self.ref_n)])  # warm up: not on the first push
        meta = {"generator": generator.name, "checkpoint": generator.checkpoint_label}
        super().__init__(reference, self.net_out.lookahead, meta)
        self._anchor, self._activity = anchor, activity
        self._out0: np.ndarray | None = None
        self.head, self.mouth = generator.head_motion, generator.mouth_scale
        self.blinks = None
        if generator.blink_interval > 0:
            rng = np.random.default_rng(0 if seed is None else seed)
            self.blinks = BlinkTrack(generator.blink_interval, info.fps, rng)
        self.history = FeatureHistory() if p.silence_gate_db is not None else None
        self._level_frames = max(1, int(round(LEVEL_HISTORY_S * info.fps)))
        self.energy = EnergyTrack(self.lookahead, info.fps) if generator.energy_mouth > 0 else None
        self._drop = generator.energy_drop(self.ref) if self.energy is not None else 0.0

    def _push(self, features: np.ndarray) -> np.ndarray:
        if features.shape[1] != self.dim:
            raise InputError(
                f"features must have shape (n, {self.dim}) for this checkpoint, got {features.shape}; compute them "
                f"with the checkpoint's front-end {self.info.frontend['name']!r}"
            )
        if self.history is not None:
            self.history.add(features)
        if self.energy is not None:
            self.energy.add(features)
        return self._finish(self.net_out.push(features), total=None)

    def _flush(self) -> np.ndarray:
        return self._finish(self.net_out.flush(), total=self.frames_in)

    def _finish(self, out: np.ndarray, total: int | None) -> np.ndarray:
        t0, n = self.frames_out, len(out)
        if n == 0:
            return np.zeros((0, NUM_POINTS, 2), np.float32)
        reach = max(self.params.anchor_frames, 1)
        if t0 < reach:  # anchor_start on frames at their own index, with frame 0's output as the offset base
            if t0 == 0:
                self._out0 = out[0].copy()
            tmp = np.zeros((t0 + n, out.shape[1]), np.float32)
            tmp[0], tmp[t0:] = self._out0, out
            out = self._anchor(tmp, self.ref_n, self.params.anchor_frames, copy=False)[t0:]
        pts = np.empty((n, NUM_POINTS, 2), np.float32)
        for i in range(0, n, 4096):
            pts[i : i + 4096] = self.info.normalizer.denormalize(out[i : i + 4096], self.ref)
        if t0 == 0:
            pts[0] = self.ref
        if self.history is not None:
            _gate(pts, self.ref, self._gate_weights(t0, n, total))
        if self.head != 1.0 or self.mouth != 1.0:
            rescale_motion(pts, self.ref, self.head, self.mouth)
        if self.energy is not None:
            add_jaw_drop(pts, self.ref, self.energy.opening(t0, n, self.frames_in, total) * self._drop)
        if self.blinks is not None:
            apply_blinks(pts, self.blinks.closing(t0, t0 + n, total))
        return pts

    def _gate_weights(self, t0: int, n: int, total: int | None) -> np.ndarray:
        """The silence gate's weight of frames ``[t0, t0 + n)``, each from the features up to its lookahead."""
        end = self.frames_in if total is None else total
        w = np.empty(n)
        for i, t in enumerate(range(t0, t0 + n)):
            stop = min(t + self.lookahead + 1, end)
            start = max(0, min(t - 3, stop - self._level_frames))
            w[i] = self._activity(self.history.get(start, stop), self.params.silence_gate_db)[t - start]
        nxt = t0 + n  # the next frame reaches back to min(nxt - 3, its stop - level), its stop at least this
        self.history.trim(max(0, min(nxt - 3, min(nxt + self.lookahead + 1, self.frames_in) - self._level_frames)))
        return w


class StaticStream(KeypointStream):
    """``static``: the reference for every frame, at once (lookahead 0; equals offline)."""

    def __init__(self, reference: Keypoints, meta: dict):
        super().__init__(reference, 0, meta)
        self.ref = reference.points[0].astype(np.float32)

    def _push(self, features: np.ndarray) -> np.ndarray:
        return np.repeat(self.ref[None], len(features), 0)

    def _flush(self) -> np.ndarray:
        return np.zeros((0, NUM_POINTS, 2), np.float32)


class WholeStream(KeypointStream):
    """Every frame at flush, from ``generator.generate`` on all the features (lookahead ``None``: equals offline;
    memory grows with the stream)."""

    def __init__(self, generator, reference: Keypoints, seed: int | None):
        super().__init__(reference, None, {"generator": generator.name})
        self.generator, self.seed = generator, seed
        self._rows: list[np.ndarray] = []

    def _push(self, features: np.ndarray) -> np.ndarray:
        self._rows.append(features.copy())
        return np.zeros((0, NUM_POINTS, 2), np.float32)

    def _flush(self) -> np.ndarray:
        if not self._rows:
            return np.zeros((0, NUM_POINTS, 2), np.float32)
        kp = self.generator.generate(np.concatenate(self._rows), self.reference, seed=self.seed)
        self.meta = dict(kp.meta)
        return kp.points


class ProceduralStream(KeypointStream):
    """``procedural`` with a lookahead ``L``: each frame's signals from the features up to ``L`` frames after it.

    Differences from offline (docs/streaming.md measures them): the loudness range (10th-97th percentile) is that of
    the last :data:`LEVEL_HISTORY_S` seconds up to frame ``t + L`` (offline: the whole clip), and the edge of the
    smoothing is the newest feature (offline: the clip's end); the nod and sway are scaled by their largest value so
    far (offline: over the clip; the nod's from :data:`NOD_SCALE` up, the sway noise's over at least the 5 s drawn
    ahead of the frame); over the first second the activity is scaled down (a loudness range of a few frames is
    unsure: offline it would be the clip's, which has more); the blinks come from a generator of their own
    (offline: the one after the sway noise), so they fall at other times at the same rate. ``activity`` and
    ``smooth`` are the module's ``speech_activity`` and ``_smooth``."""

    SWAY_SIGMA = 12.0
    SWAY_AHEAD = 125  # frames of sway noise drawn (and smoothed) ahead of the frame, for its scale
    NOD_REACH = 24  # frames of loudness before a frame that its mouth and nod smoothing reach (4 * 3 + 1 + 4 * 2 + 3)
    RAMP_FRAMES = 25  # the loudness range of fewer frames than this is unsure: the activity is scaled down by it
    NOD_SCALE = 0.05  # the nod's scale before any larger is seen (the largest nod of a real clip: 0.05-0.1)

    def __init__(self, generator, reference: Keypoints, lookahead: int, seed: int | None, *, activity, smooth):
        super().__init__(reference, lookahead, {"generator": generator.name})
        self.gen, p = generator, generator.params
        self._activity, self._smooth = activity, smooth
        self.ref = reference.points[0].astype(np.float32)
        from ..keypoints import face_scale

        self.size = float(face_scale(self.ref))
        self._noise_rng = np.random.default_rng(seed)
        self.blinks = BlinkTrack(p.blink_interval, p.fps, np.random.default_rng(None if seed is None else [seed, 1]))
        self.history = FeatureHistory()
        self._level_frames = max(lookahead + self.NOD_REACH + 1, int(round(LEVEL_HISTORY_S * p.fps)))
        self._noise = np.zeros((0, 3))  # sway noise rows from _noise_start on
        self._noise_start = 0
        self._sway_done = 0  # frames whose smoothed sway entered the running scale
        self._sway_max = np.zeros(3)
        self._nod_max = self.NOD_SCALE
        self._start: np.ndarray | None = None  # frame 0's (dx, dy, angle)

    def _push(self, features: np.ndarray) -> np.ndarray:
        self.history.add(features)
        return self._frames(self.frames_out, max(self.frames_out, self.frames_in - self.lookahead), None)

    def _flush(self) -> np.ndarray:
        return self._frames(self.frames_out, self.frames_in, self.frames_in)

    def _signals(self, t: int, end: int) -> tuple[float, float]:
        """Mouth opening and (unscaled) nod of frame ``t`` from the features of frames ``< end``."""
        p = self.gen.params
        start = max(0, min(t - self.NOD_REACH, end - self._level_frames))
        act = self._activity(self.history.get(start, end)) * min(1.0, end / self.RAMP_FRAMES)
        n = len(act)
        act = np.concatenate([act[p.lead_frames :], np.repeat(act[-1:], min(p.lead_frames, n), 0)])[:n]
        opening = 0.0 if t == 0 else float(self._smooth(act, 0.8)[t - start] ** 1.5)
        nod = float(self._smooth(np.gradient(self._smooth(act, 3.0)), 2.0)[t - start]) if n >= 3 else 0.0
        return opening, nod

    def _sway(self, start: int, stop: int) -> np.ndarray:
        """Smoothed sway noise of frames ``[start, stop)``, scaled by the largest value up to ``SWAY_AHEAD`` after
        each frame."""
        from scipy.ndimage import gaussian_filter1d

        reach = int(4.0 * self.SWAY_SIGMA + 0.5)  # gaussian_filter1d's radius
        need = stop + self.SWAY_AHEAD + reach + 1
        have = self._noise_start + len(self._noise)
        if need > have:
            self._noise = np.concatenate([self._noise, self._noise_rng.standard_normal((need - have, 3))])
        lo = max(0, start - reach)
        seg = self._noise[lo - self._noise_start :]
        smooth = gaussian_filter1d(seg, self.SWAY_SIGMA, axis=0, mode="nearest")  # frame lo + i in row i
        out = np.empty((stop - start, 3))
        for i, t in enumerate(range(start, stop)):
            upto = t + self.SWAY_AHEAD + 1
            if upto > self._sway_done:
                seen = smooth[self._sway_done - lo : upto - lo]
                self._sway_max = np.maximum(self._sway_max, np.abs(seen).max(0))
                self._sway_done = upto
            out[i] = smooth[t - lo] / (self._sway_max + 1e-6)
        keep = max(0, stop - reach) - self._noise_start
        if keep > 0:
            self._noise, self._noise_start = self._noise[keep:], self._noise_start + keep
        return out

    def _frames(self, first: int, stop: int, total: int | None) -> np.ndarray:
        n = stop - first
        if n <= 0:
            return np.zeros((0, NUM_POINTS, 2), np.float32)
        p = self.gen.params
        end = self.frames_in if total is None else total
        opening, nod = np.empty(n, np.float32), np.empty(n, np.float32)  # float32, as offline
        for i, t in enumerate(range(first, stop)):
            opening[i], nod[i] = self._signals(t, min(t + self.lookahead + 1, end))
            self._nod_max = max(self._nod_max, abs(nod[i]))
            nod[i] /= self._nod_max + 1e-6
        sway = self._sway(first, stop)
        amp = p.head_motion * self.size
        motion = np.stack(
            [amp * sway[:, 0], amp * (0.6 * nod + 0.4 * sway[:, 1]), 0.05 * p.head_motion / 0.04 * sway[:, 2]]
        )
        if self._start is None:
            self._start = motion[:, 0].copy()
        dx, dy, angle = motion - self._start[:, None]
        pts = self.gen.pose(self.ref, opening, dx, dy, angle)
        apply_blinks(pts, self.blinks.closing(first, stop, total))
        if first == 0:
            pts[0] = self.ref
        reach = min(stop + self.lookahead + 1, self.frames_in) - self._level_frames  # the next frame's, at least
        self.history.trim(max(0, min(stop - self.NOD_REACH, reach)))
        return pts.astype(np.float32)
