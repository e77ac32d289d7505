"""The QA report's per-family and per-language tables and the recomputed lip-audio coupling, on a dataset built
from four real shared clips of two families (lrs2 + lrs3 = lipread, and lrcar) and two languages."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from a2k_toolkit.data import report as report_module
from a2k_toolkit.data.builder import build, load_build_config
from a2k_toolkit.data.dataset import verify
from a2k_toolkit.data.packs import read_pack_metas
from a2k_toolkit.data.report import report
from a2k_toolkit.hashing import sha256_file

REPO = Path(__file__).resolve().parents[1]
# rows of ../shared/data/clips.csv: ar_news_c01's note says it may be ar_news_c04 (one person group)
CLIPS = [
    "clips/avsr_00006.mp4",
    "clips/lrs3/spectre_4994604c.mp4",
    "clips/lrcar/ArabicLipReading_002b7a11.mp4",
    "clips/lrcar/ArabicLipReading_00b211f5.mp4",
]


@pytest.fixture(scope="module")
def family_dataset(shared_data, tmp_path_factory):
    """A dataset built from a manifest with named columns: the shared clips.csv rows of CLIPS."""
    root = tmp_path_factory.mktemp("family_videos")
    with open(shared_data / "clips.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    header, wanted = rows[0], [r for r in rows[1:] if r and r[0] in CLIPS]
    assert len(wanted) == len(CLIPS)
    for r in wanted:  # linked beside the manifest, so that keys and sources are relative to it
        link = root / r[0]
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(shared_data / r[0])
    with open(root / "clips.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([header, *wanted])
    out = tmp_path_factory.mktemp("family_ds") / "vox"
    cfg = load_build_config({"detect_every": 4, "min_frames": 16, "shard_size": 2})
    build(str(root / "clips.csv"), out, cfg, log=lambda m: None)
    return out


def _metas(out: Path) -> list[dict]:
    return [m for shard in sorted((out / "shards").glob("*.npz")) for m in read_pack_metas(shard)]


def _expected(metas: list[dict]) -> dict:
    """A table row computed by hand from the clips' stored metadata."""
    q = [m["meta"] for m in metas]
    frames = np.array([x["frames"] for x in q])
    interp = np.array([x["interpolated"] for x in q])
    corr = np.array([x["corr"] for x in q if x["corr"] is not None])
    return {
        "clips": len(metas),
        "identities": len({m["identity"] for m in metas}),
        "groups": len({x["group"] for x in q}),
        "frames": int(frames.sum()),
        "minutes": frames.sum() / 25 / 60,
        "faceless_fraction": interp.sum() / frames.sum(),
        "clips_with_faceless": int((interp > 0).sum()),
        "face_width_median": np.median([x["face_width"] for x in q]),
        "coupling_clips": len(corr),
        "coupling_median": np.median(corr),
        "coupling_mean": corr.mean(),
        "coupling_strong_fraction": (corr >= 0.2).mean(),
        "lag_ms_median": np.median([x["lag_ms"] for x in q if x["lag_ms"] is not None]),
    }


def _assert_row(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for k, v in want.items():
        assert got[k] == pytest.approx(v, abs=6e-4 if k == "minutes" else 6e-5), (k, got[k], v)


def test_per_family_and_language_rows_match_the_clip_metadata(family_dataset):
    out = family_dataset
    metas = _metas(out)
    fam = {"lrs2": "lipread", "lrs3": "lipread", "lrcar": "lrcar"}
    assert {m["meta"]["family"] for m in metas} == set(fam)
    rep = json.loads((out / "qa" / "report.json").read_text())
    tables = rep["families"]
    assert tables["recorded"] == {"family": len(metas), "language": len(metas)}
    assert set(tables["per_family"]) == {"lipread", "lrcar"}
    for name in ("lipread", "lrcar"):
        _assert_row(tables["per_family"][name], _expected([m for m in metas if fam[m["meta"]["family"]] == name]))
    assert set(tables["per_language"]) == {"ar", "en"}
    for lang in ("ar", "en"):
        _assert_row(tables["per_language"][lang], _expected([m for m in metas if m["meta"]["language"] == lang]))
    _assert_row(tables["all"], _expected(metas))
    lrcar = tables["per_family"]["lrcar"]
    assert lrcar["identities"] == 2 and lrcar["groups"] == 1  # "may be the same person as": one group
    md = (out / "qa" / "report.md").read_text()
    row = tables["per_family"]["lipread"]
    assert "## Per family" in md and "## Per language" in md and "records no family" not in md
    assert f"| lipread | {row['clips']} | {row['identities']} | {row['groups']} | {row['minutes']:.2f} |" in md


def test_recompute_rewrites_only_the_report(family_dataset, tmp_path):
    out = tmp_path / "vox"
    shutil.copytree(family_dataset, out)
    before = {p.relative_to(out).as_posix(): sha256_file(p) for p in out.rglob("*") if p.is_file()}
    rep = report(out, recompute=True)
    assert rep["coupling"]["source"] == "recomputed"
    ch = rep["coupling"]["recompute"]
    # built with today's definition: only the 16-bit audio and float32 keypoints of the packs differ
    assert ch["compared"] == ch["clips"] == len(_metas(out)) and ch["max_abs_change"] <= 2e-3
    after = {p.relative_to(out).as_posix(): sha256_file(p) for p in out.rglob("*") if p.is_file()}
    changed = {k for k in before if before[k] != after[k]}
    assert changed <= {"qa/report.json", "qa/report.md", "manifest.json"} and "qa/report.json" in changed
    verify(out)  # the manifest follows the rewritten report
    report(out)  # back to the stored coupling: the same bytes as the build wrote
    assert {p.relative_to(out).as_posix(): sha256_file(p) for p in out.rglob("*") if p.is_file()} == before


def test_the_recomputed_coupling_feeds_every_table(family_dataset, tmp_path, monkeypatch):
    out = tmp_path / "vox"
    shutil.copytree(family_dataset, out)
    stored = [m["meta"]["corr"] for m in _metas(out)]
    monkeypatch.setattr(report_module, "lip_audio_coupling", lambda *a, **k: {"corr": 0.5, "lag": 1, "lag_ms": 40.0})
    rep = report(out, recompute=True)
    for row in [*rep["families"]["per_family"].values(), *rep["families"]["per_language"].values()]:
        assert row["coupling_median"] == row["coupling_mean"] == 0.5 and row["lag_ms_median"] == 40.0
        assert row["coupling_strong_fraction"] == 1.0
    assert [b["count"] for b in rep["histograms"]["lip_audio_coupling"]][-1] == len(stored)  # [0.5, inf)
    ch = rep["coupling"]["recompute"]
    assert ch["changed"] == sum(1 for c in stored if c != 0.5)
    assert ch["mean_change"] == pytest.approx(np.mean([0.5 - c for c in stored]), abs=1e-5)
    per_clip = {p["key"]: p for p in rep["coupling"]["per_clip"]}
    for m in _metas(out):
        assert per_clip[m["key"]]["corr"] == 0.5 and per_clip[m["key"]]["stored_corr"] == m["meta"]["corr"]
    md = (out / "qa" / "report.md").read_text()
    assert "Recomputed from the stored keypoints and audio" in md and "| stored corr |" in md
    index = json.loads((out / "index.json").read_text())["clips"]
    assert [c["coupling"] for c in index] == [
        c["coupling"] for c in json.loads((family_dataset / "index.json").read_text())["clips"]
    ]  # the index keeps the stored values


def test_cli_recompute_qa(family_dataset, tmp_path):
    out = tmp_path / "vox"
    shutil.copytree(family_dataset, out)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "a2k_toolkit.cli", "dataset", "report", str(out), "--recompute-qa"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert "coupling (recomputed)" in proc.stdout and "recomputed: " in proc.stdout
    assert "lipread: " in proc.stdout and "lrcar: " in proc.stdout
    verify(out)
