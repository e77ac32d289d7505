"""Resampling of audio that arrives in chunks, equal to resampling it whole.

:func:`a2k_toolkit.audio.resample` (the resampler every file and array goes through) is scipy's polyphase
``resample_poly``: an FIR low-pass of ``2 * 10 * max(up, down) + 1`` taps (Kaiser window, beta 5) applied to the
zero-stuffed signal, every ``down``-th sample kept, the filter's delay removed, the samples before the start and past
the end taken as zeros. :class:`StreamResampler` applies the same filter, with the same float32 arithmetic, to the
samples received so far and returns each output sample as soon as every input sample it depends on has arrived
(:attr:`StreamResampler.delay_samples` later: 0.7 ms at 44.1 kHz -> 16 kHz); :meth:`StreamResampler.flush`
returns the rest, as if the zeros past the end had arrived. The concatenated output equals
``resample(whole_signal, orig_sr, target_sr)`` sample for sample, whatever the chunk sizes (a test pins it).
"""

from __future__ import annotations

from math import gcd

import numpy as np

from ..errors import InputError


class StreamResampler:
    """Chunked polyphase resampling from ``orig_sr`` to ``target_sr`` Hz, equal to :func:`a2k_toolkit.audio.resample`
    of the concatenated input. Memory is bounded by the filter (plus the largest chunk), not by the stream."""

    def __init__(self, orig_sr: int, target_sr: int):
        orig_sr, target_sr = int(orig_sr), int(target_sr)
        if orig_sr <= 0 or target_sr <= 0:
            raise InputError(f"sample rates must be positive, got {orig_sr} -> {target_sr}")
        self.orig_sr, self.target_sr = orig_sr, target_sr
        g = gcd(orig_sr, target_sr)
        self.up, self.down = target_sr // g, orig_sr // g
        self.samples_in = 0  # input samples received
        self.samples_out = 0  # output samples returned
        self._flushed = False
        self._buf = np.zeros(0, np.float32)  # input samples from absolute index self._buf_start on
        self._buf_start = 0
        if self.passthrough:
            return
        from scipy.signal import firwin

        # resample_poly's filter for a float32 signal, built the same way (so the same float32 products and sums)
        half_len = 10 * max(self.up, self.down)
        h = np.asarray(firwin(2 * half_len + 1, 1.0 / max(self.up, self.down), window=("kaiser", 5.0)), np.float32)
        h *= self.up
        pre_pad = self.down - half_len % self.down
        self._h = np.concatenate([np.zeros(pre_pad, np.float32), h])
        self._skip = (half_len + pre_pad) // self.down  # output samples of the filter's delay, dropped

    @property
    def passthrough(self) -> bool:
        return self.up == self.down

    @property
    def delay_samples(self) -> int:
        """Input samples that must follow a sample before the output at its time is complete (the filter's half
        length, plus one)."""
        return 0 if self.passthrough else -(-self._skip * self.down // self.up) + 1

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Mono float32 samples at ``orig_sr`` -> the output samples at ``target_sr`` that are now complete."""
        if self._flushed:
            raise InputError("this resampler was flushed; start a new one for a new stream")
        x = np.asarray(samples, np.float32).reshape(-1)
        self.samples_in += len(x)
        if self.passthrough:
            self.samples_out += len(x)
            return x
        self._buf = np.concatenate([self._buf, x]) if len(self._buf) else x.copy()
        # output i is final once the last input sample its taps reach, floor((i + skip) * down / up), has arrived
        last = (self.samples_in * self.up - 1) // self.down - self._skip
        return self._emit(last + 1)

    def flush(self) -> np.ndarray:
        """The remaining output samples (the input taken as zeros past its end); the stream is then complete."""
        if self._flushed:
            return np.zeros(0, np.float32)
        self._flushed = True
        if self.passthrough:
            return np.zeros(0, np.float32)
        total = -(-self.samples_in * self.up // self.down)  # ceil: resample_poly's output length
        return self._emit(total)

    def _emit(self, stop: int) -> np.ndarray:
        """Output samples ``[samples_out, stop)``, computed by upfirdn on the buffered input."""
        from scipy.signal import upfirdn

        start = self.samples_out
        if stop <= start:
            return np.zeros(0, np.float32)
        up, down, h = self.up, self.down, self._h
        # the first input sample output `start` reaches, rounded down to a multiple of `down` so that the segment's
        # output grid is the whole signal's (segment output k = whole-signal output k + a * up / down)
        first = max(0, -(-((start + self._skip) * down - (len(h) - 1)) // up))
        a = max(self._buf_start, first // down * down)
        seg = self._buf[a - self._buf_start :]
        y = upfirdn(h, seg, up, down) if len(seg) else np.zeros(0, np.float32)
        offset = a * up // down - self._skip  # segment output k is output k + offset
        lo, hi = start - offset, stop - offset
        out = np.zeros(stop - start, np.float32)
        got = y[lo:hi]
        out[: len(got)] = got  # outputs past the end of upfirdn's output only see zeros
        self.samples_out = stop
        # keep the input from (a multiple of `down` at or before) the first sample the next output reaches
        nxt = max(0, -(-((stop + self._skip) * down - (len(h) - 1)) // up)) // down * down
        if nxt > self._buf_start:
            drop = min(nxt - self._buf_start, len(self._buf))
            self._buf = self._buf[drop:]
            self._buf_start += drop
        return out
