"""``a2k serve``: keypoints from live audio over WebSocket (docs/serve.md).

``protocol`` holds the messages (start, ready, frames as JSON or binary, end, done, error) and the close codes;
``metrics`` the counters and the latency histogram of ``/metrics``; ``app`` the Starlette application (one
:class:`~a2k_toolkit.streaming.StreamSession` per connection, one pipeline for the process); ``assets`` the files
served over HTTP: the browser page of ``page/`` (the microphone to ``/stream``, the keypoints drawn over the photo)
and the sample face; ``client`` plays an audio file through a server (``a2k stream --url``). Only ``commands/``
imports this package.
"""

from __future__ import annotations
