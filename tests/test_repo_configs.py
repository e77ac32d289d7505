"""The configs under configs/: each loads with its own loader, configs/README.md lists exactly the files there, and
`base:` chains stay short."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from a2k_toolkit.config import load_config, read_config_file
from a2k_toolkit.eval.config import load_eval_config
from a2k_toolkit.training.config import load_train_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def files(pattern: str) -> list[Path]:
    return sorted(CONFIGS.glob(pattern))


@pytest.mark.parametrize("path", files("train/**/*.yaml"), ids=lambda p: p.relative_to(CONFIGS).as_posix())
def test_every_training_config_loads(path):
    cfg = load_train_config(path)
    assert cfg.run_dir.startswith("runs/")


@pytest.mark.parametrize("path", files("eval/**/*.yaml"), ids=lambda p: p.relative_to(CONFIGS).as_posix())
def test_every_eval_config_loads(path):
    assert load_eval_config(path).entries


@pytest.mark.parametrize("path", files("pipeline/*.yaml"), ids=lambda p: p.relative_to(CONFIGS).as_posix())
def test_every_pipeline_config_loads(path):
    assert load_config(path).generator.name


def test_the_readme_lists_every_config_and_its_base():
    readme = (CONFIGS / "README.md").read_text("utf-8")
    rows = dict(re.findall(r"^\| `([^`]+)` \|.*\| (.+) \|$", readme, flags=re.M))
    on_disk = {p.relative_to(CONFIGS).as_posix() for p in CONFIGS.rglob("*") if p.suffix in (".yaml", ".csv")}
    assert set(rows) == on_disk
    for name in files("train/**/*.yaml"):
        base = read_config_file(name).get("base")
        listed = rows[name.relative_to(CONFIGS).as_posix()]
        if base is None:
            assert listed.startswith("—")
        else:
            assert listed == f"`{(name.parent / base).resolve().relative_to(CONFIGS / 'train').as_posix()}`"


def test_base_chains_are_at_most_three_deep():
    def depth(path: Path) -> int:
        base = read_config_file(path).get("base")
        return 0 if base is None else 1 + depth((path.parent / base).resolve())

    assert max(depth(p) for p in files("train/**/*.yaml")) <= 3
