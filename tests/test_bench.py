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
STAGES = ["hardware", "frontend", "keypoints", "train", "loader", "landmarks", "render", "generate", "streaming"]


def a2k(*args):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "a2k_toolkit.cli", *args], capture_output=True, text=True, env=env)


def test_quick_json_of_the_cheap_stages():
    proc = a2k("bench", "--quick", "--json", "--only", "frontend,render,landmarks,hardware")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)  # stdout is the JSON object alone; progress goes to stderr
    machine = result["machine"]
    assert machine["cpu_count"] >= 1 and machine["torch_threads"] >= 1
    assert isinstance(machine["torch_version"], str) and machine["device"] in ("cpu", "cuda", "mps")
    assert result["settings"] == {
        "quick": True,
        "repeat": 1,
        "naive": False,
        "stages": ["frontend", "render", "landmarks", "hardware"],
    }
    expected = {"frontend_10s_s", "frontend_rtf", "landmarks_frames_per_s"}
    expected |= {"hardware_sgemm_gflop_per_s", "hardware_conv_gflop_per_s"}
    expected |= {f"render_{r}_{s}_frames_per_s" for r in ("warp", "sketch") for s in (256, 512)}
    stages = ("frontend", "render", "landmarks", "hardware")
    expected |= {f"{st}_{k}" for st in stages for k in ("peak_rss_mib", "wall_s")}
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
    assert "frames_per_s" in table and "/s" in table and "MiB" in table and "GFLOP/s" in table


def test_naive_reaches_the_stages_and_the_table(monkeypatch, capsys):
    """--naive is passed to every stage's context and shown in the table's heading; the keypoint stage's keys for
    both paths (written by the real stage, run in the slow benchmark only) have units the table knows."""
    suite = load_suite()
    seen = []

    def fake(ctx):
        seen.append(ctx.naive)
        return {
            "keypoints_60s_s": 0.5,
            "keypoints_60s_naive_s": 2.0,
            "keypoints_lite_60s_naive_s": 1.0,
            "keypoints_60s_gflop": 16.6,
            "keypoints_60s_gflop_per_s": 33.2,
            "keypoints_params_m": 7.6,
        }

    monkeypatch.setitem(suite.STAGES, "keypoints", fake)
    assert main(["bench", "--only", "keypoints", "--naive", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert seen == [True] and "--naive" in out.splitlines()[0]
    for key, unit in (
        ("keypoints_60s_naive_s", "s"),
        ("keypoints_60s_gflop_per_s", "GFLOP/s"),
        ("keypoints_60s_gflop", "GFLOP"),
        ("keypoints_params_m", "M params"),
    ):
        assert suite.unit_of(key) == unit
        assert key in out
    assert main(["bench", "--only", "keypoints", "--repeat", "1", "--json"]) == 0
    assert seen == [True, False] and json.loads(capsys.readouterr().out)["settings"]["naive"] is False


def test_flop_counter_gives_the_analytic_count_of_a_tiny_conv():
    import torch

    class TinyConv(torch.nn.Module):  # the generator's call signature: (features (B, T, D), reference (B, 136))
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv1d(3, 5, kernel_size=3, padding=1)
            self.head = torch.nn.Linear(5, 2)

        def forward(self, features, reference):
            return self.head(self.conv(features.transpose(1, 2)).transpose(1, 2))

    T = 10
    # 2 FLOPs per multiply-add: conv 5 outputs x T frames x (3 inputs x 3 taps); linear T x 5 x 2; biases not counted
    expected = 2 * 5 * T * 3 * 3 + 2 * T * 5 * 2
    assert load_suite().model_gflop(TinyConv(), window=T, feature_dim=3) * 1e9 == pytest.approx(expected)


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
