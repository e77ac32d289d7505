"""Small chart drawing with OpenCV (already a dependency), so reports always have their plots: a line chart and a
grid of bar charts. Images are RGB uint8; text is ASCII (OpenCV's Hershey fonts have no other glyphs)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

WHITE = (255, 255, 255)
BLACK = (20, 20, 20)
GREY = (150, 150, 150)
LIGHT = (225, 225, 225)
# colour per series (RGB); ground truth is always black
PALETTE = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
]
FONT = 0  # cv2.FONT_HERSHEY_SIMPLEX


def color(i: int) -> tuple[int, int, int]:
    return PALETTE[i % len(PALETTE)]


def ascii_text(text: str) -> str:
    table = {"³": "^3", "²": "^2", "±": "+-", "·": "*", "§": "S", "→": "->", "≤": "<=", "≥": ">=", "—": "-", "–": "-"}
    return "".join(table.get(ch, ch if ord(ch) < 128 else "?") for ch in text)


def _text(img, text, org, scale=0.45, col=BLACK, thickness=1, anchor="left"):
    import cv2

    text = ascii_text(text)
    (w, h), _ = cv2.getTextSize(text, FONT, scale, thickness)
    x, y = org
    if anchor == "centre":
        x -= w // 2
    elif anchor == "right":
        x -= w
    cv2.putText(img, text, (int(x), int(y)), FONT, scale, col, thickness, cv2.LINE_AA)
    return w, h


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering ``[lo, hi]``."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [round(first + k * step, 12) for k in range(int((hi - first) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) >= 1e-9 else "0"


class _Axes:
    def __init__(self, img, box, xlim, ylim):
        self.img, (self.x0, self.y0, self.x1, self.y1) = img, box
        self.xlim, self.ylim = xlim, ylim

    def px(self, x, y):
        (a, b), (c, d) = self.xlim, self.ylim
        u = self.x0 + (np.asarray(x, float) - a) / (b - a or 1) * (self.x1 - self.x0)
        v = self.y1 - (np.asarray(y, float) - c) / (d - c or 1) * (self.y1 - self.y0)
        return u, v

    def frame(self, xlabel="", ylabel="", xticks=True):
        import cv2

        for t in nice_ticks(*self.ylim):
            _, v = self.px(self.xlim[0], t)
            cv2.line(self.img, (self.x0, int(v)), (self.x1, int(v)), LIGHT, 1)
            _text(self.img, _fmt(t), (self.x0 - 6, int(v) + 4), 0.38, anchor="right")
        if xticks:
            for t in nice_ticks(*self.xlim, n=8):
                u, _ = self.px(t, self.ylim[0])
                cv2.line(self.img, (int(u), self.y1), (int(u), self.y1 + 4), BLACK, 1)
                _text(self.img, _fmt(t), (int(u), self.y1 + 18), 0.38, anchor="centre")
        cv2.rectangle(self.img, (self.x0, self.y0), (self.x1, self.y1), BLACK, 1)
        if xlabel:
            _text(self.img, xlabel, ((self.x0 + self.x1) // 2, self.y1 + 36), 0.45, anchor="centre")
        if ylabel:
            _text(self.img, ylabel, (8, self.y0 - 8), 0.42)


def line_chart(
    series: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    title: str,
    xlabel: str = "",
    ylabel: str = "",
    colors: Mapping[str, tuple[int, int, int]] | None = None,
    widths: Mapping[str, int] | None = None,
    size: tuple[int, int] = (1100, 460),
) -> np.ndarray:
    """Lines ``name -> (x, y)`` on one axis, with a legend above the plot. Returns an RGB image ``(H, W, 3)``."""
    import cv2

    w, h = size
    img = np.full((h, w, 3), 255, np.uint8)
    _text(img, title, (w // 2, 24), 0.6, anchor="centre", thickness=1)
    xs = np.concatenate([np.asarray(x, float) for x, _ in series.values()]) if series else np.zeros(1)
    ys = np.concatenate([np.asarray(y, float) for _, y in series.values()]) if series else np.zeros(1)
    ylo, yhi = float(np.nanmin(ys)), float(np.nanmax(ys))
    pad = (yhi - ylo) * 0.06 or max(abs(yhi), 1.0) * 0.1
    ax = _Axes(img, (70, 66, w - 20, h - 52), (float(xs.min()), float(xs.max()) or 1.0), (ylo - pad, yhi + pad))
    ax.frame(xlabel, ylabel)
    lx = 160
    for i, (name, (x, y)) in enumerate(series.items()):
        col = (colors or {}).get(name, color(i))
        u, v = ax.px(x, y)
        pts = np.stack([u, v], -1).round().astype(np.int32)
        cv2.polylines(img, [pts], False, col, (widths or {}).get(name, 2), cv2.LINE_AA)
        cv2.line(img, (lx, 44), (lx + 22, 44), col, 3, cv2.LINE_AA)
        tw, _ = _text(img, name, (lx + 28, 49), 0.45)
        lx += tw + 50
    return img


def bar_grid(
    panels: Sequence[tuple[str, Mapping[str, float | None], float | None]],
    labels: Sequence[str],
    *,
    title: str = "",
    cols: int = 4,
    panel_size: tuple[int, int] = (300, 230),
) -> np.ndarray:
    """One small bar chart per panel ``(title, {label: value}, reference)``; bars in ``labels`` order and colours,
    a missing value drawn as "n/a", the optional reference as a dashed line (e.g. the real clips' value, or 1 for a
    ratio). A legend of ``labels`` sits on top. Returns an RGB image."""
    import cv2

    pw, ph = panel_size
    cols = max(1, min(cols, len(panels)))
    rows = max(1, math.ceil(len(panels) / cols))
    top = 64
    img = np.full((top + rows * ph, cols * pw, 3), 255, np.uint8)
    if title:
        _text(img, title, (img.shape[1] // 2, 24), 0.6, anchor="centre")
    lx = 16
    for i, label in enumerate(labels):
        cv2.rectangle(img, (lx, 38), (lx + 14, 52), color(i), -1)
        tw, _ = _text(img, label, (lx + 20, 50), 0.45)
        lx += tw + 40
    for k, (name, values, ref) in enumerate(panels):
        r, c = divmod(k, cols)
        ox, oy = c * pw, top + r * ph
        _text(img, name, (ox + pw // 2, oy + 18), 0.45, anchor="centre")
        vals = [values.get(lb) for lb in labels]
        finite = [v for v in vals if v is not None and math.isfinite(v)] + ([ref] if ref is not None else [])
        lo, hi = min([0.0, *finite]), max([0.0, *finite])
        if hi - lo < 1e-12:
            hi = lo + 1.0
        pad = (hi - lo) * 0.12
        ax = _Axes(
            img,
            (ox + 58, oy + 30, ox + pw - 12, oy + ph - 26),
            (0.0, float(len(labels))),
            (lo - (pad if lo < 0 else 0), hi + pad),
        )
        ax.frame(xticks=False)
        _, zero = ax.px(0, 0)
        for j, v in enumerate(vals):
            u0, _ = ax.px(j + 0.18, 0)
            u1, _ = ax.px(j + 0.82, 0)
            if v is None or not math.isfinite(v):
                _text(img, "n/a", (int((u0 + u1) / 2), int(zero) - 4), 0.35, GREY, anchor="centre")
                continue
            _, top_v = ax.px(0, v)
            y0, y1 = sorted((int(round(zero)), int(round(top_v))))
            cv2.rectangle(img, (int(u0), y0), (int(u1), max(y1, y0 + 1)), color(j), -1)
            _text(img, _fmt(v), (int((u0 + u1) / 2), (y0 - 4) if v >= 0 else (y1 + 14)), 0.35, anchor="centre")
        if ref is not None and math.isfinite(ref):
            _, rv = ax.px(0, ref)
            for x in range(ax.x0, ax.x1, 10):
                cv2.line(img, (x, int(rv)), (min(x + 5, ax.x1), int(rv)), BLACK, 1)
    return img
