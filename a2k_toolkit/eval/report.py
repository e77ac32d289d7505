"""Write an evaluation report directory: ``report.md`` (tables), ``results.json`` (every number) and ``plots/*.png``.

Every file is written atomically; ``report.md`` is written last, so its presence means the report is complete. The
tables come from :mod:`.tables` and :mod:`.selection_tables`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_write_text, save_image
from .results import EvalResults
from .selection_tables import selection_section
from .tables import MAX_CLIP_ROWS, clip_table, fmt, summary_table

__all__ = ["fmt", "markdown", "results_json", "selection_section", "summary_table", "write_report"]


def _json_default(o: Any):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _clean(o: Any) -> Any:
    """NaN/inf -> None, so results.json is strict JSON."""
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


def results_json(results: EvalResults, selection: dict | None = None) -> str:
    return json.dumps(_clean(results.to_dict(selection)), indent=2, default=_json_default, allow_nan=False) + "\n"


def markdown(results: EvalResults, plots: list[str], plot_note: str = "", selection: dict | None = None) -> str:
    s = results.settings
    lines = [
        "# Keypoint evaluation report",
        "",
        f"{results.num_clips} clips, {results.seconds:.1f} s at {s['fps']:g} fps; "
        f"generators: {', '.join(f'`{lb}`' for lb in results.labels)}; audio front-end `{s['frontend']['name']}`; "
        f"seed {s['seed']}.",
        "",
        f"Each generator got frame 0 of each clip as its reference and the clip's own audio. Distances are in IOD "
        f"(the inter-ocular distance of frame 0); L1 is in normalised units with statistics "
        f"{s['normalizer_source']}; PCK threshold {s['alpha']}·max(h, w) of the clip's ground-truth keypoint box; "
        f"correlations at the best lag within ±{s['max_lag']} frames (a correlation with a still side counts as 0). "
        "Error metrics skip frame 0 (the given reference). Definitions: docs/evaluation.md.",
        "",
        "## Summary (mean over clips)",
        "",
        "↓ lower is better, ↑ higher is better, →1 closest to the real clips is best. Lags in frames (mean over "
        "clips): lip lag > 0 means the prediction is late; audio lag > 0 means the mouth leads the sound. "
        "(N×) is the ratio to the real clips (ratio of the means over clips).",
        "",
        *summary_table(results),
        "",
    ]
    partial = [
        f"`{lb}` {key}: {agg['n_clips']} clips"
        for lb in results.labels
        for key, agg in results.aggregate[lb].items()
        if agg["n_clips"] != results.num_clips
    ]
    if partial:
        lines += ["Metrics averaged over fewer clips (undefined where the real value is 0): " + "; ".join(partial), ""]
    lines += selection_section(results, selection)
    lines += ["## Plots", ""]
    lines += [f"![{Path(p).stem}]({p})" for p in plots]
    if plot_note:
        lines.append(plot_note)
    lines += ["", "## Per clip", ""]
    if results.num_clips > MAX_CLIP_ROWS:
        lines += [f"First {MAX_CLIP_ROWS} of {results.num_clips} clips; results.json has all of them.", ""]
    lines += clip_table(results)
    notes = [f"- `{c.clip_id}`: {n}" for c in results.clips for n in c.notes]
    notes += [f"- skipped `{s['clip_id']}`: {s['reason']}" for s in results.skipped]
    if notes:
        lines += ["", "## Notes", "", *notes]
    lines += ["", "All numbers: `results.json`.", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------------- plots


def mouth_plot(results: EvalResults, clip_id: str) -> np.ndarray:
    from .plots import GREY, color, line_chart

    ser = results.series[clip_id]
    fps = results.settings["fps"]
    t = np.arange(len(ser["real"])) / fps
    lines: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    colors = {}
    rms = ser["rms"]
    real = ser["real"]
    if rms.max() > 0:  # audio RMS rescaled onto the opening axis, for reading the timing
        scaled = real.min() + rms / rms.max() * (real.max() - real.min() if np.ptp(real) > 0 else 1.0)
        lines["audio RMS (scaled)"] = (t, scaled)
        colors["audio RMS (scaled)"] = GREY
    lines["real"] = (t, real)
    colors["real"] = (0, 0, 0)
    for i, label in enumerate(results.labels):
        if label in ser:
            lines[label] = (t, ser[label])
            colors[label] = color(i)
    return line_chart(
        lines,
        title=f"Mouth opening, clip {clip_id}",
        xlabel="time (s)",
        ylabel="opening (IOD)",
        colors=colors,
        widths={"audio RMS (scaled)": 1},
    )


def metrics_plot(results: EvalResults) -> np.ndarray:
    from .plots import bar_grid

    real = results.real_aggregate
    one = 1.0
    spec = [
        ("L1 (lower better)", "l1", None),
        ("PCK % (higher better)", "pck", None),
        ("LMD, IOD", "lmd", None),
        ("lip corr", "lip_corr", None),
        ("audio corr (- - real)", "audio_corr", real["audio_corr"]["mean"]),
        ("mouth amp. pred/real", "mouth_ratio", one),
        ("head amp. pred/real", "head_ratio", one),
        ("jerk, IOD/frame^3 (- - real)", "jerk", real["jerk"]["mean"]),
        ("identity err., IOD (- - real)", "identity", real["identity"]["mean"]),
    ]
    panels = [
        (title, {lb: results.aggregate[lb][key]["mean"] for lb in results.labels}, ref) for title, key, ref in spec
    ]
    return bar_grid(panels, results.labels, title=f"Mean over {results.num_clips} clips ({results.seconds:.1f} s)")


def write_report(results: EvalResults, out_dir: str | Path, *, plots: bool = True) -> dict[str, Path]:
    """Write ``results.json``, ``plots/*.png`` and ``report.md`` (last) under ``out_dir``; return their paths."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        from ..errors import InputError

        raise InputError(f"report output {out} exists and is not a directory; give a directory path")
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    selection = results.selection()  # once, for results.json and report.md
    atomic_write_text(out / "results.json", results_json(results, selection))
    written["json"] = out / "results.json"
    rel_plots: list[str] = []
    note = ""
    if plots:
        images = {"metrics": metrics_plot(results)}
        if results.series:
            clip_id = max(results.series, key=lambda c: len(results.series[c]["real"]))  # longest kept clip
            images["mouth_opening"] = mouth_plot(results, clip_id)
        for name, img in images.items():
            path = out / "plots" / f"{name}.png"
            save_image(path, img)
            written[f"plot_{name}"] = path
            rel_plots.append(f"plots/{name}.png")
    else:
        note = "(plots not written: run without --no-plots to get them)"
    atomic_write_text(out / "report.md", markdown(results, rel_plots, note, selection))
    written["markdown"] = out / "report.md"
    return written
