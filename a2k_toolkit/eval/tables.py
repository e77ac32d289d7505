"""The Markdown tables of an evaluation report: the summary of an aggregate (:func:`aggregate_table`), over all
clips (:func:`summary_table`) and per clip (:func:`clip_table`), with the number format they share (:func:`fmt`)."""

from __future__ import annotations

import math

from .results import EvalResults

MAX_CLIP_ROWS = 60  # per-clip rows in report.md (results.json always has every clip)


def fmt(v: float | int | None, signed: bool = False) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if abs(v) < 1e-9:
        return "0"
    return f"{v:+.3g}" if signed else f"{v:.3g}"


SUMMARY_COLUMNS = (
    # (header, metric key, ratio key or None, lag key or None)
    ("L1 ↓", "l1", None, None),
    ("PCK@α (%) ↑", "pck", None, None),
    ("LMD (IOD) ↓", "lmd", None, None),
    ("lip corr ↑ (lag)", "lip_corr", None, "lip_lag"),
    ("audio corr ↑ (lag)", "audio_corr", None, "audio_lag"),
    ("mouth std, IOD (×real →1)", "mouth_std", "mouth_ratio", None),
    ("head motion, IOD (×real →1)", "head_motion", "head_ratio", None),
    ("jerk, IOD/frame³ (×real)", "jerk", "jerk_ratio", None),
    ("identity err., IOD ↓ (×real)", "identity", "identity_ratio", None),
)
REAL_ONLY = {"l1", "pck", "lmd", "lip_corr"}  # trivial for the ground truth itself


def _cell(agg: dict, key: str, ratio: str | None, lag: str | None) -> str:
    text = fmt(agg[key]["mean"])
    if lag:
        text += f" ({fmt(agg[lag]['mean'], signed=True)})"
    if ratio:
        text += f" ({fmt(agg[ratio]['mean'])}×)"
    return text


def md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def aggregate_table(
    labels: list[str], aggregate: dict, real: dict, alpha: float, counts: tuple[str, ...] = ("clips", "seconds")
) -> list[str]:
    """The summary table of one aggregate (``label -> metric -> {mean, n_clips, seconds}``); with ``counts``
    ``("families",)`` the aggregate is a family mean (``{mean, n_families, ...}``)."""
    header = ["generator", *counts, *(c[0].replace("α", str(alpha)) for c in SUMMARY_COLUMNS)]

    def count_cells(agg: dict) -> list[str]:
        if counts == ("families",):
            return [str(agg["n_families"])]
        return [str(agg["n_clips"]), f"{agg['seconds']:.1f}"]

    rows = []
    for label in labels:
        agg = aggregate[label]
        rows.append([f"`{label}`", *count_cells(agg["l1"]), *(_cell(agg, *c[1:]) for c in SUMMARY_COLUMNS)])
    real_row = ["real clips (ground truth)", *count_cells(real["mouth_std"])]
    for _, key, _ratio, lag in SUMMARY_COLUMNS:
        if key in REAL_ONLY:
            real_row.append("—")
        else:
            real_row.append(fmt(real[key]["mean"]) + (f" ({fmt(real[lag]['mean'], signed=True)})" if lag else ""))
    rows.append(real_row)
    return md_table(header, rows)


def summary_table(results: EvalResults) -> list[str]:
    return aggregate_table(results.labels, results.aggregate, results.real_aggregate, results.settings["alpha"])


def clip_table(results: EvalResults) -> list[str]:
    header = [
        "clip",
        "family",
        "s",
        "generator",
        "L1",
        "PCK %",
        "LMD",
        "lip corr",
        "audio corr (real)",
        "mouth ×",
        "head ×",
        "jerk ×",
        "identity ×",
    ]
    rows = []
    for rec in results.clips[:MAX_CLIP_ROWS]:
        for label in results.labels:
            m = rec.generators[label]
            rows.append(
                [
                    rec.clip_id,
                    rec.family,
                    f"{rec.seconds:.2f}",
                    f"`{label}`",
                    fmt(m["l1"]),
                    fmt(m["pck"]),
                    fmt(m["lmd"]),
                    fmt(m["lip_corr"]),
                    f"{fmt(m['audio_corr'])} ({fmt(rec.real['audio_corr'])})",
                    fmt(m["mouth_ratio"]),
                    fmt(m["head_ratio"]),
                    fmt(m["jerk_ratio"]),
                    fmt(m["identity_ratio"]),
                ]
            )
    return md_table(header, rows)
