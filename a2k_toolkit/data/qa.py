"""Per-clip quality measures (lip-audio coupling, face size) and the pictures of the QA report.

Lip-audio coupling: the Pearson correlation between the mouth opening (:func:`a2k_toolkit.keypoints.mouth_opening`:
inner-lip gap, points 62-66, divided by the inter-ocular distance of the clip's frame 0, as in evaluation) and the
speech energy (RMS of the audio under each frame), at the best lag within ``±max_lag`` frames. A positive lag means
the mouth moves before the sound. Clips with weak coupling are poor lip-sync training data; training can filter or
weight clips on it (as large corpora are filtered with sync scores).

Face size: :func:`a2k_toolkit.keypoints.face_width` (pixels), what the builder's ``min_face`` is compared with.
"""

from __future__ import annotations

import math

import numpy as np

from ..audio import frame_rms
from ..errors import InputError
from ..keypoints import face_width, mouth_opening, reference_iod  # noqa: F401 (face_width: the builder's size)


def _corr(a: np.ndarray, b: np.ndarray) -> float | None:
    if len(a) < 8:
        return None
    sa, sb = a.std(), b.std()
    if sa < 1e-9 or sb < 1e-9:
        return None
    return float(((a - a.mean()) * (b - b.mean())).mean() / (sa * sb))


def lip_audio_coupling(points: np.ndarray, audio: np.ndarray, sample_rate: int, fps: float, max_lag: int = 3) -> dict:
    """``{"corr", "lag", "lag_ms"}`` at the best lag in ``[-max_lag, max_lag]`` (``None`` values when undefined:
    a still mouth, silence, fewer than 8 frames, or coincident eye centres in frame 0)."""
    T = len(points)
    try:
        mouth = mouth_opening(points, reference_iod(points))
    except InputError:  # coincident eye centres in frame 0: no unit to measure the mouth in
        return {"corr": None, "lag": None, "lag_ms": None}
    energy = frame_rms(audio, sample_rate, T, fps)
    best: tuple[float, int] | None = None
    for lag in range(-max_lag, max_lag + 1):
        # mouth at frame t against the sound at frame t + lag
        a = mouth[: T - lag] if lag >= 0 else mouth[-lag:]
        b = energy[lag:] if lag >= 0 else energy[: T + lag]
        c = _corr(a, b)
        if c is not None and (best is None or c > best[0]):
            best = (c, lag)
    if best is None:
        return {"corr": None, "lag": None, "lag_ms": None}
    return {"corr": round(best[0], 4), "lag": best[1], "lag_ms": round(1000.0 * best[1] / fps, 1)}


# ------------------------------------------------------------------------------------------------- pictures


def encode_thumb(frame: np.ndarray, max_side: int = 128) -> tuple[bytes, float]:
    """A small JPEG of an RGB frame and the scale applied to it."""
    import cv2

    scale = min(1.0, max_side / max(frame.shape[:2]))
    small = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else frame
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(np.ascontiguousarray(small), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85]
    )
    return (buf.tobytes() if ok else b""), float(scale)


def decode_thumb(data: bytes) -> np.ndarray | None:
    import cv2

    if not data:
        return None
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return None if img is None else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def contact_sheet(tiles: list[tuple[np.ndarray, np.ndarray, str]], tile: int = 160, columns: int = 4) -> np.ndarray:
    """A grid of ``(thumbnail, keypoints in thumbnail pixels, label)``: keypoints drawn over each frame."""
    import cv2

    from ..keypoints import draw_keypoints

    rows = max(1, math.ceil(len(tiles) / columns))
    label_h = 18
    sheet = np.full((rows * (tile + label_h), columns * tile, 3), 24, np.uint8)
    for i, (img, pts, label) in enumerate(tiles):
        r, c = divmod(i, columns)
        scale = tile / max(img.shape[:2])
        canvas = cv2.resize(img, (max(1, round(img.shape[1] * scale)), max(1, round(img.shape[0] * scale))))
        canvas = np.ascontiguousarray(canvas)
        draw_keypoints(canvas, np.asarray(pts) * scale, thickness=1)
        y0, x0 = r * (tile + label_h), c * tile
        sheet[y0 : y0 + canvas.shape[0], x0 : x0 + canvas.shape[1]] = canvas[:tile, :tile]
        cv2.putText(
            sheet, label[:26], (x0 + 3, y0 + tile + 13), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (230, 230, 230), 1, cv2.LINE_AA
        )
    return sheet


def histogram(values: list[float], edges: list[float]) -> list[dict]:
    """Counts of ``values`` in ``[edges[i], edges[i+1])`` (the last bin is open above)."""
    bins = []
    for i, lo in enumerate(edges):
        hi = edges[i + 1] if i + 1 < len(edges) else math.inf
        bins.append({"from": lo, "to": None if hi == math.inf else hi, "count": sum(1 for v in values if lo <= v < hi)})
    return bins
