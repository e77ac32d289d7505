"""Which :class:`~a2k_toolkit.models.batching.WindowBatcher` the calling thread's windows go to (its own module, so
that :mod:`a2k_toolkit.models.inference` can ask without importing the batcher, which imports it)."""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any

_ACTIVE: contextvars.ContextVar[Any] = contextvars.ContextVar("a2k_window_batcher", default=None)


def active_batcher() -> Any:
    """The batcher the calling thread is a caller of (:meth:`WindowBatcher.caller`), else ``None``."""
    return _ACTIVE.get()


@contextlib.contextmanager
def batching_into(batcher: Any):
    """Within this block, the calling thread's :class:`~a2k_toolkit.models.inference.WindowedRunner` windows go to
    ``batcher`` (``WindowBatcher.caller`` uses it)."""
    token = _ACTIVE.set(batcher)
    try:
        yield batcher
    finally:
        _ACTIVE.reset(token)
