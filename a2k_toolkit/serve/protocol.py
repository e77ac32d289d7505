"""The messages of ``a2k serve`` (docs/serve.md): what a client sends, what the server answers, the binary frame
layout and the WebSocket close codes. Pure functions on bytes and dicts, shared by the server and the client."""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

#: the binary keypoint frame: uint32 frame index, float32 timestamp (s), then 68 x 2 float32, all little-endian
FRAME_HEADER = struct.Struct("<If")
POINTS = 68
FRAME_BYTES = FRAME_HEADER.size + POINTS * 2 * 4
FORMATS = ("json", "binary")
MIN_RATE, MAX_RATE = 8000, 192000

# WebSocket close codes (RFC 6455, section 7.4.1) the server uses, each after an error message that says why
NORMAL = 1000  # the session ended: "done" was sent
UNSUPPORTED = 1003  # a message of the wrong kind (text where audio was expected, audio before "start")
INVALID = 1007  # a message whose content is wrong (bad JSON or start fields, odd PCM length, no face in the image)
POLICY = 1008  # refused: token, Origin, idle timeout, session time, a client that does not read its frames
TOO_BIG = 1009  # a message over --max-message-bytes
INTERNAL = 1011  # the server failed (a bug: the error message says what)
TRY_LATER = 1013  # --max-sessions sessions are open: try again later

START_FIELDS = {"type", "image", "reference", "image_size", "sample_rate", "lookahead_ms", "format"}


class ProtocolError(Exception):
    """A message the protocol does not allow: sent to the client as an error, then the connection closes with
    ``code``."""

    def __init__(self, message: str, code: int = INVALID):
        super().__init__(message)
        self.message, self.code = message, code


@dataclass(frozen=True)
class Start:
    """A parsed start message: an encoded image (bytes) or reference points ``(68, 2)`` with their image size."""

    image: bytes | None
    reference: np.ndarray | None
    image_size: tuple[int, int] | None
    sample_rate: int
    lookahead_ms: float | str | None
    format: str


def parse_json(text: str) -> dict[str, Any]:
    try:
        msg = json.loads(text)
    except ValueError as exc:
        raise ProtocolError(f"a text message must be JSON: {exc}") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise ProtocolError('a text message must be a JSON object with a "type" field, e.g. {"type": "end"}')
    return msg


def parse_start(msg: dict[str, Any]) -> Start:
    """The first message of a connection, checked field by field (docs/serve.md, "Start")."""
    if msg.get("type") != "start":
        raise ProtocolError(f'the first message must be {{"type": "start", ...}}, got type {msg.get("type")!r}')
    unknown = sorted(set(msg) - START_FIELDS)
    if unknown:
        raise ProtocolError(f"unknown field(s) in the start message: {', '.join(unknown)}")
    has_image, has_ref = msg.get("image") is not None, msg.get("reference") is not None
    if has_image == has_ref:
        raise ProtocolError('the start message needs exactly one of "image" (base64 JPEG/PNG) or "reference"')
    image = reference = image_size = None
    if has_image:
        if not isinstance(msg["image"], str):
            raise ProtocolError('"image" must be a base64 string of a JPEG or PNG file')
        data = msg["image"]
        if data.startswith("data:") and "," in data:  # a data URL, as a browser's FileReader gives
            data = data.split(",", 1)[1]
        try:
            image = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError('"image" is not valid base64') from None
        if not image:
            raise ProtocolError('"image" is empty')
    else:
        try:
            reference = np.asarray(msg["reference"], dtype=np.float32)
        except (TypeError, ValueError):
            reference = None
        if reference is None or reference.shape != (POINTS, 2) or not np.isfinite(reference).all():
            raise ProtocolError('"reference" must be 68 [x, y] pairs of finite numbers (pixels of the face image)')
        size = msg.get("image_size")
        if size is not None:
            ok = isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)
            if not ok:
                raise ProtocolError('"image_size" must be [height, width] in pixels')
            image_size = (size[0], size[1])
    rate = msg.get("sample_rate", 16000)
    if isinstance(rate, bool) or not isinstance(rate, int) or not MIN_RATE <= rate <= MAX_RATE:
        raise ProtocolError(f'"sample_rate" must be a whole number of Hz from {MIN_RATE} to {MAX_RATE}, got {rate!r}')
    look = msg.get("lookahead_ms")
    if look is not None and not (isinstance(look, str) and look == "full"):
        if isinstance(look, bool) or not isinstance(look, (int, float)) or not math.isfinite(look) or look < 0:
            raise ProtocolError(f'"lookahead_ms" must be a number >= 0, "full" or null, got {look!r}')
    fmt = msg.get("format", "json")
    if fmt not in FORMATS:
        raise ProtocolError(f'"format" must be "json" or "binary", got {fmt!r}')
    return Start(image, reference, image_size, rate, look, fmt)


def pcm16(data: bytes) -> np.ndarray:
    """A binary audio message: PCM16 little-endian mono samples -> float32 in [-1, 1)."""
    if len(data) % 2:
        raise ProtocolError(
            f"an audio message must be 16-bit PCM (an even number of bytes), got {len(data)} bytes; send "
            "little-endian int16 mono samples at the start message's sample_rate"
        )
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def frame_json(index: int, timestamp: float, points: np.ndarray) -> str:
    return json.dumps({"type": "frame", "index": index, "t": timestamp, "points": points.tolist()})


def frame_binary(index: int, timestamp: float, points: np.ndarray) -> bytes:
    return FRAME_HEADER.pack(index, timestamp) + np.asarray(points, dtype="<f4").tobytes()


def read_frame(data: bytes) -> tuple[int, float, np.ndarray]:
    """A binary keypoint frame -> (index, timestamp, points (68, 2) float32)."""
    if len(data) != FRAME_BYTES:
        raise ProtocolError(f"a binary keypoint frame has {FRAME_BYTES} bytes, got {len(data)}")
    index, t = FRAME_HEADER.unpack_from(data)
    pts = np.frombuffer(data, dtype="<f4", offset=FRAME_HEADER.size).reshape(POINTS, 2).astype(np.float32)
    return index, t, pts


def message(kind: str, **fields: Any) -> str:
    return json.dumps({"type": kind, **fields})
