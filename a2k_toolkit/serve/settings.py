"""The limits and capacity settings of ``a2k serve`` (:class:`ServeSettings`, the command's flags)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ServeSettings:
    """The limits of a server (the flags of ``a2k serve``; docs/serve.md, "Limits")."""

    max_sessions: int = 8
    max_message_bytes: int = 8 * 1024 * 1024
    idle_timeout_s: float = 30.0
    max_session_s: float = 3600.0
    max_speed: float = 2.0  # audio seconds per second of wall time, sustained (0: no limit)
    burst_s: float = 5.0  # audio a client may send ahead of that rate
    max_queued_frames: int = 250  # frames waiting for a client that does not read them (10 s at 25 fps)
    token: str | None = None
    allow_origins: tuple[str, ...] = field(default_factory=tuple)
    warm_up: bool = True  # load the pipeline's lazy parts before serving (see warm_up)
    batch_windows: int = 32  # windows of all sessions in one forward pass at most (0: no batching; docs/serve.md)
    batch_wait_ms: float = 4.0  # how long a window waits for other sessions' while one of them is still busy
    inference_processes: int = 1  # batches run in this many processes of their own (0: in a thread of the server's)
    inference_backend: str = "auto"  # what runs the batches: torch, onnxruntime, auto (models.ort_form.BACKENDS)
    hop: int | None = None  # the generator's hop in every session (None: its default; docs/streaming.md)

    def ws_max_size(self) -> int:
        """The protocol-level cap given to uvicorn: above ours, so that a message a little over the limit gets the
        documented error; a message over this one is cut by the WebSocket layer (close 1009, no error message)."""
        return 2 * self.max_message_bytes + (1 << 20)
