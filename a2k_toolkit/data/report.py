"""The QA report of a Vox-KP dataset: counts, rejection reasons, duration / face-size / lip-audio coupling
histograms, per-clip coupling, and a contact sheet of keypoints drawn over sampled frames.

Written by the build's finalize step (``qa/report.json``, ``qa/report.md``, ``qa/contact_sheet.png``) and again by
``a2k dataset report OUT``. The files depend only on the dataset (no timestamps), so they are part of its manifest.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..io import atomic_write_text, save_image
from .layout import Layout, StatusLog
from .packs import Pack
from .qa import contact_sheet, decode_thumb, histogram
from .sources import SPLITS

DURATION_EDGES = [0, 1, 2, 4, 8, 16, 32, 64]
FACE_EDGES = [0, 40, 60, 80, 120, 160, 240, 320, 480]
COUPLING_EDGES = [-1.0, 0.0, 0.1, 0.2, 0.3, 0.5]
WEAK_COUPLING = 0.1
SHEET_TILES = 16


def write_report(layout: Layout, *, status: dict, index: list[dict], split_info: dict) -> dict[str, Any]:
    failed = {k: r for k, r in status.items() if r.get("status") == "failed"}
    done = {k: r for k, r in status.items() if r.get("status") == "done"}
    fps = index[0]["fps"] if index else 25.0
    durations = [c["frames"] / c["fps"] for c in index]
    widths = [c["face_width"] for c in index if c.get("face_width") is not None]
    couplings = [c["coupling"] for c in index if c.get("coupling") is not None]
    lags = Counter(c["lag_ms"] for c in index if c.get("lag_ms") is not None)
    weak = [c for c in index if c.get("coupling") is None or c["coupling"] < WEAK_COUPLING]
    notes = {k: r["notes"] for k, r in sorted(done.items()) if r.get("notes")}
    report = {
        "counts": {
            "videos": len(status), "done": len(done), "failed": len(failed), "clips": len(index),
            "hours": round(sum(durations) / 3600, 4),
            "per_split": {s: {k: split_info[s][k] for k in ("clips", "frames", "identities", "hours")} for s in SPLITS},
        },
        "rejections": dict(sorted(Counter(r["reason"] for r in failed.values()).items())),
        "failed": [{"key": k, "reason": r["reason"], "message": r["message"], "source": r.get("source")}
                   for k, r in sorted(failed.items())],
        "notes": notes,
        "histograms": {
            "duration_s": histogram(durations, DURATION_EDGES),
            "face_width_px": histogram(widths, FACE_EDGES),
            "lip_audio_coupling": histogram(couplings, COUPLING_EDGES),
            "best_lag_ms": [{"lag_ms": k, "count": lags[k]} for k in sorted(lags)],
        },
        "coupling": {
            "definition": "Pearson correlation of the mouth opening (inner-lip gap 62-66 / frame 0's inter-ocular "
                          "distance) with the audio RMS "
                          "per frame, at the best lag within +-3 frames; lag > 0: the mouth moves before the sound",
            "median": float(np.median(couplings)) if couplings else None,
            "weak_threshold": WEAK_COUPLING,
            "weak": [c["key"] for c in weak],
            "per_clip": [{"key": c["key"], "corr": c.get("coupling"), "lag_ms": c.get("lag_ms")} for c in index],
        },
        "contact_sheet": "contact_sheet.png" if index else None,
        "fps": fps,
    }  # fmt: skip
    layout.qa.mkdir(parents=True, exist_ok=True)
    atomic_write_text(layout.qa / "report.json", json.dumps(report, indent=1, sort_keys=True) + "\n")
    atomic_write_text(layout.qa / "report.md", _markdown(report, index))
    sheet = layout.qa / "contact_sheet.png"
    if index:
        save_image(sheet, _sheet(layout, index))
    else:
        sheet.unlink(missing_ok=True)
    return report


def _sheet(layout: Layout, index: list[dict]) -> np.ndarray:
    """Up to 16 clips, evenly spread over the (key-sorted) index: the clip's stored frame with its keypoints."""
    n = min(SHEET_TILES, len(index))
    picks = sorted({round(i * (len(index) - 1) / max(1, n - 1)) for i in range(n)})
    tiles = []
    packs: dict[str, Pack] = {}
    for i in picks:
        entry = index[i]
        pack = packs.setdefault(entry["shard"], Pack(layout.root / entry["shard"]))
        clip = pack[entry["position"]]
        img = decode_thumb(pack.thumb(entry["position"]))
        t, scale = clip.meta.get("thumb_frame"), clip.meta.get("thumb_scale")
        if img is None or t is None:
            continue
        tiles.append((img, clip.keypoints[t] * scale, entry["key"].split("@")[0][-26:]))
    if not tiles:
        return np.full((64, 64, 3), 24, np.uint8)
    return contact_sheet(tiles)


def _bar(count: int, peak: int, width: int = 30) -> str:
    return "#" * (round(width * count / peak) if peak else 0)


def _markdown(r: dict, index: list[dict]) -> str:
    c = r["counts"]
    out = ["# Vox-KP QA report", "",
           f"- videos: {c['videos']} ({c['done']} done, {c['failed']} rejected)",
           f"- clips: {c['clips']} ({c['hours'] * 60:.2f} min)", ""]  # fmt: skip
    out += ["| split | clips | identities | frames | hours |", "|---|---|---|---|---|"]
    for s, v in c["per_split"].items():
        out.append(f"| {s} | {v['clips']} | {v['identities']} | {v['frames']} | {v['hours']} |")
    out += ["", "## Rejections", ""]
    if r["failed"]:
        out += ["| video | reason | detail |", "|---|---|---|"]
        out += [f"| {f['key']} | {f['reason']} | {f['message']} |" for f in r["failed"]]
    else:
        out.append("none")
    if r["notes"]:
        out += ["", "## Notes", ""]
        out += [f"- {k}: {'; '.join(v)}" for k, v in r["notes"].items()]
    for name, unit in (("duration_s", "s"), ("face_width_px", "px"), ("lip_audio_coupling", "")):
        bins = r["histograms"][name]
        peak = max((b["count"] for b in bins), default=0)
        out += ["", f"## Histogram: {name}", "", "```"]
        for b in bins:
            hi = "inf" if b["to"] is None else f"{b['to']:g}"
            out.append(f"[{b['from']:>5g}, {hi:>5}) {unit:>2} {b['count']:>6}  {_bar(b['count'], peak)}")
        out.append("```")
    cp = r["coupling"]
    out += ["", "## Lip-audio coupling", "", cp["definition"] + ".", "",
            f"Median: {cp['median']}. Clips below {cp['weak_threshold']} (suspect for lip-sync training): "
            f"{len(cp['weak'])}.", "", "| clip | corr | best lag (ms) |", "|---|---|---|"]  # fmt: skip
    out += [f"| {p['key']} | {p['corr']} | {p['lag_ms']} |" for p in cp["per_clip"]]
    if r["contact_sheet"]:
        out += ["", "## Contact sheet", "", "![keypoints over sampled frames](contact_sheet.png)"]
    return "\n".join(out) + "\n"


def report(root: str | Path) -> dict[str, Any]:
    """Rewrite the QA report of a finished dataset from its index, shards and status log."""
    layout = Layout(root)
    if not layout.index.is_file():
        raise InputError(f"{root} has no index.json: it is not a finished Vox-KP dataset; run `a2k dataset build`")
    index = json.loads(layout.index.read_text("utf-8"))["clips"]
    splits = json.loads(layout.splits.read_text("utf-8"))["counts"]
    split_info = {s: splits[s] for s in SPLITS}
    return write_report(layout, status=StatusLog(layout.status).read(), index=index, split_info=split_info)
