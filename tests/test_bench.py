"""`a2k bench`: the cheap stages end to end in a subprocess (keys, types, units; never speeds), and its user errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import a2k_toolkit
from a2k_toolkit.cli import main
from a2k_toolkit.commands.bench import load_suite
from a2k_toolkit.errors import A2KError

ROOT = Path(a2k_toolkit.__file__).resolve().parents[1]
STAGES = ["frontend", "keypoints", "train", "loader", "landmarks", "render", "generate"]


def a2k(*args):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "a2k_toolkit.cli", *args], capture_output=True, text=True, env=env)


def test_quick_json_of_the_cheap_stages():
    proc = a2k("bench", "--quick", "--json", "--only", "frontend,render,landmarks")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)  # stdout is the JSON object alone; progress goes to stderr
    machine = result["machine"]
    assert machine["cpu_count"] >= 1 and machine["torch_threads"] >= 1
    assert isinstance(machine["torch_version"], str) and machine["device"] in ("cpu", "cuda", "mps")
    assert result["settings"] == {"quick": True, "repeat": 1, "stages": ["frontend", "render", "landmarks"]}
    expected = {"frontend_10s_s", "frontend_rtf", "landmarks_frames_per_s"}
    expected |= {f"render_{r}_{s}_frames_per_s" for r in ("warp", "sketch") for s in (256, 512)}
    expected |= {f"{st}_{k}" for st in ("frontend", "render", "landmarks") for k in ("peak_rss_mib", "wall_s")}
    figures = {k: v for k, v in result.items() if k not in ("machine", "settings")}
    assert set(figures) == expected
    for key, value in figures.items():
        assert isinstance(value, float) and value > 0, key
        assert key == key.lower() and key.endswith(("_s", "_per_s", "_mib", "_rtf")), key
    assert figures["frontend_rtf"] == pytest.approx(figures["frontend_10s_s"] / 10)
    # the table shows every figure, with its unit
    table = load_suite().format_table(result)
    for key in figures:
        assert key in table
    assert "frames_per_s" in table and "/s" in table and "MiB" in table


def test_unknown_stage_is_a_one_line_error_listing_the_stages():
    proc = a2k("bench", "--only", "frontend,nosuchstage")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "nosuchstage" in lines[0]
    for stage in STAGES:
        assert stage in lines[0]
    assert proc.stdout == ""


def test_stage_names_and_bad_repeat(capsys):
    assert list(load_suite().STAGES) == STAGES
    assert main(["bench", "--repeat", "0"]) == 2
    assert "--repeat must be at least 1" in capsys.readouterr().err


def test_outside_a_source_checkout(tmp_path, monkeypatch):
    monkeypatch.setattr(a2k_toolkit, "__file__", str(tmp_path / "site-packages" / "a2k_toolkit" / "__init__.py"))
    with pytest.raises(A2KError, match="source checkout"):
        load_suite()
