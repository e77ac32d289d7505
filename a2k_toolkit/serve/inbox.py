"""A connection's messages read ahead of its session's pushes (``a2k serve``, docs/serve.md "Capacity"):
:class:`Inbox`, filled by the connection's reader task and emptied by its session loop, one event loop for both."""

from __future__ import annotations

import asyncio
import collections

import numpy as np

from . import protocol as P

# a connection reads ahead of its pushes up to this many bytes of messages (then the client's sends block); the audio
# messages read ahead are pushed together, up to MERGE_MAX_S seconds at once
READ_AHEAD_BYTES = 1 << 20
MERGE_MAX_S = 0.25


class Inbox:
    """Messages ``(t_recv, text or bytes)`` in the order read, and a failure to read (an exception) after them."""

    def __init__(self):
        self.items: collections.deque = collections.deque()  # (message or exception, bytes)
        self.bytes = 0
        self.changed = asyncio.Event()

    def put(self, item, size: int = 0) -> None:
        self.items.append((item, size))
        self.bytes += size
        self.changed.set()

    async def room(self) -> None:
        """Until the messages held are under :data:`READ_AHEAD_BYTES`."""
        while self.bytes >= READ_AHEAD_BYTES:
            self.changed.clear()
            await self.changed.wait()

    async def next(self) -> tuple[float, str | bytes]:
        """The next message (waiting for it); a failure to read is raised here, in its place."""
        while not self.items:
            self.changed.clear()
            await self.changed.wait()
        item, size = self._pop()
        if isinstance(item, BaseException):
            raise item
        return item

    def audio_with_next(self, wav: np.ndarray, rate: int) -> tuple[np.ndarray, int]:
        """``wav`` followed by the audio messages held after it, up to :data:`MERGE_MAX_S` seconds in all, and how
        many messages were taken with it: one push instead of several for a session that fell behind (a push's cost
        is mostly per call; the frames are the same whatever the chunks, docs/streaming.md)."""
        parts, n = [wav], len(wav)
        while self.items and isinstance(self.items[0][0], tuple) and isinstance(self.items[0][0][1], bytes):
            size = self.items[0][1]
            if n + size // 2 > MERGE_MAX_S * rate:
                break
            (_, data), _ = self._pop()
            parts.append(P.pcm16(data))
            n += len(parts[-1])
        return (np.concatenate(parts) if len(parts) > 1 else wav), len(parts) - 1

    def _pop(self):
        item, size = self.items.popleft()
        self.bytes -= size
        self.changed.set()  # the reader may be waiting for room
        return item, size
