"""The counters of ``/metrics`` in the Prometheus text format (version 0.0.4), kept by the event loop's thread
(the server only updates them there, so they need no lock)."""

from __future__ import annotations

import bisect

#: upper bounds (seconds) of the latency histogram: from receiving the audio that completes a frame to sending it
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """The server's counters; ``batcher``: the :class:`~a2k_toolkit.models.batching.WindowBatcher` whose batches
    ``/metrics`` counts (``None``: no batching, no such counters)."""

    def __init__(self, batcher=None):
        self.batcher = batcher
        self.sessions_active = 0
        self.sessions_total = 0
        self.sessions_refused = 0
        self.errors_total = 0
        self.frames_sent = 0
        self.audio_seconds = 0.0
        self.throttled_seconds = 0.0
        self.merged_messages = 0
        self.latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0

    def observe_latency(self, seconds: float) -> None:
        self.latency_counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds

    def render(self) -> str:
        lines = []

        def metric(name: str, kind: str, help_: str, value: float) -> None:
            lines.extend([f"# HELP {name} {help_}", f"# TYPE {name} {kind}", f"{name} {value:.12g}"])

        metric("a2k_sessions_active", "gauge", "Streaming sessions open now.", self.sessions_active)
        metric("a2k_sessions_total", "counter", "Streaming sessions started.", self.sessions_total)
        metric("a2k_sessions_refused_total", "counter", "Connections refused (limits, token, Origin).",
               self.sessions_refused)  # fmt: skip
        metric("a2k_errors_total", "counter", "Sessions ended by an error message.", self.errors_total)
        metric("a2k_frames_sent_total", "counter", "Keypoint frames sent.", self.frames_sent)
        metric("a2k_audio_seconds_total", "counter", "Seconds of audio received.", self.audio_seconds)
        metric("a2k_throttled_seconds_total", "counter", "Seconds spent waiting for audio to fall back to the allowed "
               "rate.", self.throttled_seconds)  # fmt: skip
        metric("a2k_audio_messages_merged_total", "counter", "Audio messages pushed together with the one before them "
               "(read while that session's earlier audio was being pushed).", self.merged_messages)  # fmt: skip
        b = self.batcher
        if b is not None:  # read from the batcher's thread's counters: each a single value, updated after a batch
            metric("a2k_inference_batches_total", "counter", "Batched forward passes of the generator network (windows "
                   "of all sessions together).", b.batches)  # fmt: skip
            metric("a2k_inference_windows_total", "counter", "Windows computed in those passes.", b.windows)
            metric("a2k_inference_seconds_total", "counter", "Seconds the batches took, from being gathered to their "
                   "rows handed back.", b.busy_s)  # fmt: skip
            metric("a2k_inference_compute_seconds_total", "counter", "Of them, seconds in the forward passes.",
                   b.compute_s)  # fmt: skip
        name = "a2k_frame_latency_seconds"
        lines += [
            f"# HELP {name} From receiving the audio message that completes a frame to sending the frame.",
            f"# TYPE {name} histogram",
        ]
        total = 0
        for bound, count in zip((*LATENCY_BUCKETS, float("inf")), self.latency_counts):
            total += count
            le = "+Inf" if bound == float("inf") else f"{bound:g}"
            lines.append(f'{name}_bucket{{le="{le}"}} {total}')
        lines += [f"{name}_sum {self.latency_sum:.12g}", f"{name}_count {total}"]
        return "\n".join(lines) + "\n"
