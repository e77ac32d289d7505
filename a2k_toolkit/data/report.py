"""The QA report of a Vox-KP dataset: counts, rejection reasons, duration / face-size / lip-audio coupling
histograms, a per-family and a per-language table (clips, people, minutes, faceless frames, face size, coupling),
per-clip coupling, and a contact sheet of keypoints drawn over sampled frames.

Written by the build's finalize step (``qa/report.json``, ``qa/report.md``, ``qa/contact_sheet.png``) and again by
``a2k dataset report OUT``. The files depend only on the dataset (no timestamps), so they are part of its manifest;
``report`` refreshes the manifest's entries of the ``qa/`` files it rewrote (and nothing else in it).

The coupling is the one stored in each clip's metadata at build time (``corr``, ``lag_ms``), or, with
``recompute=True`` (``a2k dataset report OUT --recompute-qa``), measured again on the stored keypoints and audio
with today's :func:`~a2k_toolkit.data.qa.lip_audio_coupling`; the recomputed values go into the report only (packs,
index and clip metadata keep the stored ones), with a summary of how much they moved.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..hashing import sha256_file
from ..io import atomic_write_text, save_image
from .folds import UNKNOWN_FAMILY, family_of
from .layout import Layout, StatusLog
from .packs import Pack, read_pack_metas
from .qa import contact_sheet, decode_thumb, histogram, lip_audio_coupling
from .report_markdown import markdown
from .sources import SPLITS

DURATION_EDGES = [0, 1, 2, 4, 8, 16, 32, 64]
FACE_EDGES = [0, 40, 60, 80, 120, 160, 240, 320, 480]
COUPLING_EDGES = [-1.0, 0.0, 0.1, 0.2, 0.3, 0.5]
WEAK_COUPLING = 0.1
STRONG_COUPLING = 0.2  # the per-family tables give the share of clips at or above this
SHEET_TILES = 16


def write_report(
    layout: Layout, *, status: dict, index: list[dict], split_info: dict, coupling: dict[str, dict] | None = None
) -> dict[str, Any]:
    """Write ``qa/report.{json,md}`` and the contact sheet. ``coupling`` (``{clip key: {"corr", "lag_ms", ...}}``,
    from :func:`recompute_coupling`) replaces the stored per-clip coupling in the report."""
    stored = {c["key"]: (c.get("coupling"), c.get("lag_ms")) for c in index}
    if coupling is not None:
        missing = [c["key"] for c in index if c["key"] not in coupling]
        if missing:
            raise InputError(f"no recomputed coupling for {len(missing)} clip(s), e.g. {missing[0]!r}")
        index = [{**c, "coupling": coupling[c["key"]]["corr"], "lag_ms": coupling[c["key"]]["lag_ms"]} for c in index]
    facts = clip_facts(layout, index)
    failed = {k: r for k, r in status.items() if r.get("status") == "failed"}
    done = {k: r for k, r in status.items() if r.get("status") == "done"}
    fps = index[0]["fps"] if index else 25.0
    durations = [c["frames"] / c["fps"] for c in index]
    widths = [c["face_width"] for c in index if c.get("face_width") is not None]
    couplings = [c["coupling"] for c in index if c.get("coupling") is not None]
    lags = Counter(c["lag_ms"] for c in index if c.get("lag_ms") is not None)
    notes = {k: r["notes"] for k, r in sorted(done.items()) if r.get("notes")}
    report = {
        "counts": {
            "videos": len(status),
            "done": len(done),
            "failed": len(failed),
            "clips": len(index),
            "hours": round(sum(durations) / 3600, 4),
            "per_split": {s: {k: split_info[s][k] for k in ("clips", "frames", "identities", "hours")} for s in SPLITS},
        },
        "rejections": dict(sorted(Counter(r["reason"] for r in failed.values()).items())),
        "failed": [
            {"key": k, "reason": r["reason"], "message": r["message"], "source": r.get("source")}
            for k, r in sorted(failed.items())
        ],
        "notes": notes,
        "histograms": {
            "duration_s": histogram(durations, DURATION_EDGES),
            "face_width_px": histogram(widths, FACE_EDGES),
            "lip_audio_coupling": histogram(couplings, COUPLING_EDGES),
            "best_lag_ms": [{"lag_ms": k, "count": lags[k]} for k in sorted(lags)],
        },
        "coupling": _coupling_section(index, stored, coupling),
        "families": family_tables(facts),
        "contact_sheet": "contact_sheet.png" if index else None,
        "fps": fps,
    }
    layout.qa.mkdir(parents=True, exist_ok=True)
    atomic_write_text(layout.qa / "report.json", json.dumps(report, indent=1, sort_keys=True) + "\n")
    atomic_write_text(layout.qa / "report.md", markdown(report))
    sheet = layout.qa / "contact_sheet.png"
    if index:
        save_image(sheet, _sheet(layout, index))
    else:
        sheet.unlink(missing_ok=True)
    return report


def _coupling_section(index: list[dict], stored: dict[str, tuple], coupling: dict[str, dict] | None) -> dict:
    """The report's ``coupling`` part: definition, median, weak clips, per clip (with the stored values and how
    far they moved when ``coupling`` was recomputed)."""
    couplings = [c["coupling"] for c in index if c.get("coupling") is not None]
    weak = [c for c in index if c.get("coupling") is None or c["coupling"] < WEAK_COUPLING]
    section = {
        "definition": "Pearson correlation of the mouth opening (inner-lip gap 62-66 / frame 0's inter-ocular "
        "distance) with the audio RMS "
        "per frame, at the best lag within +-3 frames; lag > 0: the mouth moves before the sound",
        "median": float(np.median(couplings)) if couplings else None,
        "weak_threshold": WEAK_COUPLING,
        "weak": [c["key"] for c in weak],
        "source": "stored" if coupling is None else "recomputed",
        "per_clip": [
            {
                "key": c["key"],
                "corr": c.get("coupling"),
                "lag_ms": c.get("lag_ms"),
                **(
                    {}
                    if coupling is None
                    else {"stored_corr": stored[c["key"]][0], "stored_lag_ms": stored[c["key"]][1]}
                ),
            }
            for c in index
        ],
    }
    if coupling is not None:
        section["recompute"] = coupling_changes(stored, coupling)
    return section


# ------------------------------------------------------------------------------------- per family and language


def clip_facts(layout: Layout, index: list[dict]) -> list[dict[str, Any]]:
    """Per index entry, what the family / language tables count: the entry's frames, fps, identity, face width
    and coupling, plus family (:func:`~a2k_toolkit.data.folds.family_of`), language, person group and
    interpolated frames from the clip's metadata in its shard (only the packs' metadata is read)."""
    metas: dict[str, dict] = {}
    for shard in sorted({c["shard"] for c in index}):
        metas.update({m["key"]: m.get("meta") or {} for m in read_pack_metas(layout.root / shard)})
    facts = []
    for c in index:
        if c["key"] not in metas:
            raise InputError(
                f"{layout.root}: clip {c['key']!r} of index.json is not in {c['shard']}; the index "
                "and the shards disagree: rebuild the dataset (rerun `a2k dataset build`)"
            )
        q = metas[c["key"]]
        interpolated = q.get("interpolated")
        if interpolated is None and q.get("measured") is not None:
            interpolated = round((1.0 - q["measured"]) * c["frames"])
        facts.append(
            {
                "key": c["key"],
                "identity": c["identity"],
                "group": str(q.get("group") or c["identity"]),
                "family": family_of(q),
                "language": str(q.get("language") or "").strip().lower() or UNKNOWN_FAMILY,
                "recorded_family": bool(q.get("family")),
                "recorded_language": bool(q.get("language")),
                "frames": c["frames"],
                "fps": c["fps"],
                "interpolated": interpolated,
                "face_width": c.get("face_width"),
                "corr": c.get("coupling"),
                "lag_ms": c.get("lag_ms"),
            }
        )
    return facts


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


def _median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


def summarize(facts: list[dict[str, Any]]) -> dict[str, Any]:
    """One row of the family / language tables. Faceless frames are the frames without a detected face
    (interpolated from their neighbours); coupling statistics are over the clips that have one."""
    frames = sum(f["frames"] for f in facts)
    known = [f for f in facts if f["interpolated"] is not None]
    known_frames = sum(f["frames"] for f in known)
    widths = [f["face_width"] for f in facts if f["face_width"] is not None]
    corrs = [f["corr"] for f in facts if f["corr"] is not None]
    lags = [f["lag_ms"] for f in facts if f["lag_ms"] is not None]
    return {
        "clips": len(facts),
        "identities": len({f["identity"] for f in facts}),
        "groups": len({f["group"] for f in facts}),
        "frames": frames,
        "minutes": round(sum(f["frames"] / f["fps"] for f in facts) / 60, 3),
        "faceless_fraction": _round(sum(f["interpolated"] for f in known) / known_frames, 4) if known_frames else None,
        "clips_with_faceless": sum(1 for f in known if f["interpolated"] > 0),
        "face_width_median": _round(_median(widths), 1),
        "coupling_clips": len(corrs),
        "coupling_median": _round(_median(corrs), 4),
        "coupling_mean": _round(float(np.mean(corrs)), 4) if corrs else None,
        "coupling_strong_fraction": round(sum(1 for c in corrs if c >= STRONG_COUPLING) / len(corrs), 4)
        if corrs
        else None,
        "lag_ms_median": _round(_median(lags), 1),
    }


def family_tables(facts: list[dict[str, Any]]) -> dict[str, Any]:
    """``per_family`` and ``per_language`` rows (sorted by name) and the row of ``all`` clips. Clips without a
    recorded family or language count as ``unknown`` (a dataset built from a folder or a plain manifest: one row)."""

    def by(field: str) -> dict[str, dict]:
        names = sorted({f[field] for f in facts})
        return {n: summarize([f for f in facts if f[field] == n]) for n in names}

    return {
        "definition": "family: data.folds.family_of of the recorded family (lrs2, lrs3, lrw: lipread; unknown: none "
        "recorded); faceless: frames without a detected face, interpolated; coupling: per-clip corr, "
        f"strong: corr >= {STRONG_COUPLING}; lag > 0: the mouth moves before the sound",
        "recorded": {
            "family": sum(f["recorded_family"] for f in facts),
            "language": sum(f["recorded_language"] for f in facts),
        },
        "strong_threshold": STRONG_COUPLING,
        "per_family": by("family"),
        "per_language": by("language"),
        "all": summarize(facts),
    }


# ------------------------------------------------------------------------------------------ recomputed coupling


def recompute_coupling(layout: Layout, index: list[dict]) -> dict[str, dict]:
    """``{clip key: lip_audio_coupling(...)}`` measured again on every indexed clip's stored keypoints and audio
    (16-bit PCM as stored), with today's :func:`~a2k_toolkit.data.qa.lip_audio_coupling`. Reads the shards only."""
    wanted = {c["key"] for c in index}
    out: dict[str, dict] = {}
    for shard in sorted({c["shard"] for c in index}):
        pack = Pack(layout.root / shard)
        for i, m in enumerate(pack.metas):
            if m["key"] in wanted:
                clip = pack[i]
                out[m["key"]] = lip_audio_coupling(
                    np.asarray(clip.keypoints, np.float64), clip.audio, clip.sample_rate, clip.fps
                )
    return out


def coupling_changes(stored: dict[str, tuple], coupling: dict[str, dict]) -> dict[str, Any]:
    """How far the recomputed coupling is from the stored one (``stored``: ``{key: (corr, lag_ms)}``)."""
    pairs = [(k, s[0], coupling[k]["corr"]) for k, s in stored.items()]
    both = [(k, a, b) for k, a, b in pairs if a is not None and b is not None]
    deltas = [b - a for _, a, b in both]
    worst = max(both, key=lambda x: (abs(x[2] - x[1]), x[0]), default=None)
    before = [a for _, a, _ in both]
    after = [b for _, _, b in both]
    return {
        "clips": len(pairs),
        "compared": len(both),
        "changed": sum(1 for d in deltas if abs(d) >= 5e-5),
        "became_undefined": sum(1 for _, a, b in pairs if a is not None and b is None),
        "became_defined": sum(1 for _, a, b in pairs if a is None and b is not None),
        "mean_change": _round(float(np.mean(deltas)), 5) if deltas else None,
        "mean_abs_change": _round(float(np.mean(np.abs(deltas))), 5) if deltas else None,
        "max_abs_change": _round(abs(worst[2] - worst[1]), 4) if worst else None,
        "max_change_clip": worst[0] if worst else None,
        "lag_changed": sum(1 for k, s in stored.items() if s[1] != coupling[k]["lag_ms"]),
        "median_stored": _round(_median(before), 4),
        "median_recomputed": _round(_median(after), 4),
        "weak_stored": sum(1 for a in before if a < WEAK_COUPLING),
        "weak_recomputed": sum(1 for b in after if b < WEAK_COUPLING),
    }


# --------------------------------------------------------------------------------------------------- pictures


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


def report(root: str | Path, *, recompute: bool = False) -> dict[str, Any]:
    """Rewrite the QA report of a finished dataset from its index, shards and status log (``recompute``: with the
    lip-audio coupling measured again on the stored clips, see the module docstring), then bring the manifest's
    entries of the ``qa/`` files up to date. Shards, index and clip metadata are never written."""
    layout = Layout(root)
    if not layout.index.is_file():
        raise InputError(f"{root} has no index.json: it is not a finished Vox-KP dataset; run `a2k dataset build`")
    index = json.loads(layout.index.read_text("utf-8"))["clips"]
    splits = json.loads(layout.splits.read_text("utf-8"))["counts"]
    split_info = {s: splits[s] for s in SPLITS}
    coupling = recompute_coupling(layout, index) if recompute else None
    rep = write_report(
        layout, status=StatusLog(layout.status).read(), index=index, split_info=split_info, coupling=coupling
    )
    _refresh_manifest(layout)
    return rep


def _refresh_manifest(layout: Layout) -> None:
    """Update the size and checksum the manifest records for each ``qa/`` file (atomic; untouched when they
    match, so rewriting an unchanged report leaves the manifest byte-identical). Other entries are kept as they
    are, so a changed shard still fails verification."""
    if not layout.manifest.is_file():
        return  # an unfinished dataset: finalize writes the manifest
    manifest = json.loads(layout.manifest.read_text("utf-8"))
    files = manifest.get("files", {})
    now = {layout.rel(p) for p in layout.qa.glob("*") if p.is_file()}
    changed = False
    for rel in sorted(now | {k for k in files if k.startswith("qa/")}):
        path = layout.root / rel
        if rel not in now:
            del files[rel]
            changed = True
            continue
        fact = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
        if files.get(rel) != fact:
            files[rel] = fact
            changed = True
    if changed:
        manifest["files"] = dict(sorted(files.items()))
        atomic_write_text(layout.manifest, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
