"""What ``a2k serve`` does before it accepts connections (:func:`warm_up`), and reading a client's image."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from . import assets
from . import protocol as P

log = logging.getLogger("a2k_toolkit.serve.app")


def decode_image(data: bytes) -> np.ndarray:
    """A client's JPEG or PNG bytes as an RGB image (a protocol error if it is neither)."""
    import cv2

    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise P.ProtocolError('"image" is not a readable JPEG or PNG file')
    return np.ascontiguousarray(img[:, :, ::-1])


def warm_up(pipeline: Any) -> float:
    """Load what a pipeline loads on first use (the detector's model, the generator's weights) before the first
    client comes, so that its session starts in a fraction of a second instead of several seconds (a browser's
    microphone is already running then): a face found on the bundled sample photo, then a second of silence
    streamed through a session (run as a caller of the server's window batcher, it also makes the batcher's traced
    form of the network, a few seconds on a CPU). Returns the seconds it took; a failure is logged, never fatal
    (the first session then pays the loading, or reports the error itself)."""
    t0 = time.perf_counter()
    try:
        img = decode_image(assets.read("samples/astronaut.jpg"))
        reference = pipeline.detect(img)
        with pipeline.stream(reference=reference, sample_rate=16000) as session:
            session.push(np.zeros(16000, np.float32))
    except Exception as exc:  # noqa: BLE001 - a warm-up only: the sessions report their own errors
        name = type(exc).__name__
        log.warning("a2k serve: the warm-up failed (%s: %s); the first session will load the models", name, exc)
    return time.perf_counter() - t0
