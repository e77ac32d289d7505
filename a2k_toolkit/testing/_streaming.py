"""Contract test mixins for components that stream (docs/plugins.md "Streaming"), and the helper that feeds a
stream in pieces."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..errors import A2KError
from ._contracts import AudioFrontendContract, GeneratorContract
from ._dummies import test_waveform


def push_in_pieces(stream, data: np.ndarray, sizes: tuple[int, ...]) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Push ``data`` (samples or feature rows) through a feature or keypoint ``stream`` in pieces of ``sizes``
    (cycled), then flush. Returns the concatenated output and, after each push, ``(items pushed, items returned)``."""
    outs, counts, i, k, returned = [], [], 0, 0, 0
    while i < len(data):
        n = max(1, int(sizes[k % len(sizes)]))
        outs.append(stream.push(data[i : i + n]))
        i, k, returned = i + n, k + 1, returned + len(outs[-1])
        counts.append((min(i, len(data)), returned))
    outs.append(stream.flush())
    return np.concatenate(outs), counts


class StreamingFrontendContract(AudioFrontendContract):
    """Checks for a front-end that streams (``stream()``, docs/plugins.md "Streaming"): the streamed rows equal
    ``frontend(waveform)`` whatever the chunk sizes, a row comes once its audio (plus ``delay_samples``) is in and
    not before, flush completes the ``ceil(duration * fps)`` rows."""

    stream_chunks: ClassVar[tuple[tuple[int, ...], ...]] = ((1,), (160,), (4000,), (7, 333, 1001))
    stream_seconds: ClassVar[float] = 1.37
    stream_atol: ClassVar[float] = 1e-4

    def test_stream_equals_offline_features(self):
        fe = self.make()
        sr = fe.sample_rate
        wav = test_waveform(self.stream_seconds, sr)
        offline = np.asarray(fe(wav, sr), np.float32)
        for sizes in self.stream_chunks:
            rows, counts = push_in_pieces(fe.stream(), wav, sizes)
            assert rows.shape == offline.shape, (sizes, rows.shape, offline.shape)
            np.testing.assert_allclose(rows, offline, atol=self.stream_atol, err_msg=f"chunks of {sizes} samples")
            hop = sr / fe.fps
            delay = fe.stream().delay_samples
            for pushed, returned in counts:
                assert returned <= pushed / hop + 1e-9, f"a row came before its frame's audio ({pushed}, {returned})"
                due = int((pushed - delay) // hop) if pushed >= delay else 0
                assert returned >= min(due, len(offline)), f"rows late: {returned} after {pushed} samples"

    def test_stream_without_audio_has_no_rows(self):
        stream = self.make().stream()
        assert stream.flush().shape[0] == 0

    def test_stream_refuses_audio_after_flush(self):
        fe = self.make()
        stream = fe.stream()
        stream.push(test_waveform(0.1, fe.sample_rate))
        stream.flush()
        try:
            stream.push(test_waveform(0.1, fe.sample_rate))
        except A2KError:
            return
        raise AssertionError("push() after flush() must raise an A2KError")


class StreamingGeneratorContract(GeneratorContract):
    """Checks for a generator that streams (``stream()``, docs/plugins.md "Streaming"), on top of
    :class:`GeneratorContract`'s: one frame per feature row once flushed (the offline length), frame 0 the reference,
    each frame returned no later than the stream's declared lookahead allows, the same output whatever the chunk
    sizes, no seams (the largest frame-to-frame move at most ``seam_factor`` times offline's), and at the lookaheads
    in ``exact_lookaheads`` the output of ``generate``. Override ``_inputs(T)`` to give features that look like your
    front-end's (the default is random rows)."""

    stream_lookaheads: ClassVar[tuple[int | None, ...]] = (0, 3, None)
    exact_lookaheads: ClassVar[tuple[int | None, ...]] = (None,)
    stream_frames: ClassVar[int] = 70
    stream_chunks: ClassVar[tuple[int, ...]] = (13, 2, 29)
    stream_options: ClassVar[dict[str, Any]] = {}
    stream_atol: ClassVar[float] = 1e-3  # pixels
    seam_factor: ClassVar[float] = 2.0

    def _open(self, gen, ref, lookahead):
        from ..streaming import keypoint_stream

        return keypoint_stream(gen, ref, lookahead=lookahead, seed=0, **self.stream_options)

    def test_stream_contract(self):
        gen = self.make()
        feats, ref = self._inputs(self.stream_frames)
        offline = gen.generate(feats, ref, seed=0).points
        jump = np.abs(np.diff(offline, axis=0)).max()
        for lookahead in self.stream_lookaheads:
            stream = self._open(gen, ref, lookahead)
            declared = stream.lookahead
            if lookahead is not None:
                assert declared is not None and declared <= lookahead, (lookahead, declared)
            rows, counts = push_in_pieces(stream, feats, (1,))
            for pushed, returned in counts:
                assert returned <= pushed
                if declared is not None:
                    assert returned >= pushed - declared, f"lookahead {lookahead}: {returned} frames after {pushed}"
            assert rows.shape == offline.shape and rows.dtype == np.float32, (lookahead, rows.shape)
            np.testing.assert_allclose(rows[0], ref.points[0], atol=1e-3)
            chunked, _ = push_in_pieces(self._open(gen, ref, lookahead), feats, self.stream_chunks)
            np.testing.assert_allclose(chunked, rows, atol=self.stream_atol, err_msg=f"lookahead {lookahead}")
            assert np.abs(np.diff(rows, axis=0)).max() <= self.seam_factor * jump + self.stream_atol, lookahead
            try:
                stream.push(feats[:1])
            except A2KError:
                pass
            else:
                raise AssertionError("push() after flush() must raise an A2KError")

    def test_stream_lengths(self):
        gen = self.make()
        for T in (1, 5):
            feats, ref = self._inputs(T)
            for lookahead in self.stream_lookaheads:
                rows, _ = push_in_pieces(self._open(gen, ref, lookahead), feats, (2,))
                assert rows.shape == (T, 68, 2), (T, lookahead, rows.shape)
        _, ref = self._inputs(1)
        assert self._open(gen, ref, self.stream_lookaheads[0]).flush().shape == (0, 68, 2)

    def test_stream_equals_generate_at_exact_lookahead(self):
        gen = self.make()
        feats, ref = self._inputs(self.stream_frames)
        offline = gen.generate(feats, ref, seed=0).points
        for lookahead in self.exact_lookaheads:
            rows, _ = push_in_pieces(self._open(gen, ref, lookahead), feats, self.stream_chunks)
            np.testing.assert_allclose(rows, offline, atol=self.stream_atol, err_msg=f"lookahead {lookahead}")
