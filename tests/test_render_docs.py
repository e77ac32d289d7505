"""docs/renderers.md stays true to the code: its example plugin runs, its param tables match the Params, its images
exist."""

from __future__ import annotations

import re
import types
from pathlib import Path

import numpy as np
import pytest
import yaml

from a2k_toolkit.builtin.side_by_side import SideBySideRenderer
from a2k_toolkit.builtin.sketch import SketchRenderer
from a2k_toolkit.builtin.warp import WarpRenderer

DOC = Path(__file__).resolve().parents[1] / "docs" / "renderers.md"


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text("utf-8")


def section(doc: str, title: str) -> str:
    start = doc.index(f"## {title}\n")
    end = doc.find("\n## ", start + 1)
    return doc[start : end if end > 0 else None]


@pytest.mark.parametrize("cls", [WarpRenderer, SketchRenderer, SideBySideRenderer])
def test_param_tables_match_the_params(doc, cls):
    rows = dict(re.findall(r"^\| `(\w+)` \| `([^`]*)` \|", section(doc, f"`{cls.name}`"), flags=re.M))
    assert set(rows) == set(cls.Params.model_fields), f"{cls.name}: documented {sorted(rows)}"
    for name, field in cls.Params.model_fields.items():
        default = field.get_default(call_default_factory=True)
        if name == "panels":
            default = [p.name for p in default]
        assert yaml.safe_load(rows[name]) == default, f"{cls.name}.{name}"


def test_example_plugin_runs(doc, shared_data, pm):
    from a2k_toolkit import io
    from a2k_toolkit.builtin.dlib_detector import DlibDetector
    from a2k_toolkit.catalog import Catalog
    from a2k_toolkit.keypoints import Keypoints
    from a2k_toolkit.plugins import make_plugin_manager

    code = re.search(r"<!-- renderer-example -->\n```python\n(.*?)```", doc, flags=re.S)[1]
    module = types.ModuleType("overlay_plugin")
    exec(compile(code, str(DOC), "exec"), module.__dict__)  # noqa: S102 - our own documentation
    catalog = Catalog(make_plugin_manager(entry_points=False, plugins=[module]))
    cls = catalog.get("renderer", "overlay")
    image = io.load_image(shared_data / "faces" / "obama.jpg")
    ref = DlibDetector().detect(image).points[0]
    kp = Keypoints(np.stack([ref, ref + [3, 1]]))
    frames = cls(size=128).render(kp, image)
    warped = WarpRenderer(size=128).render(kp, image)
    assert frames.shape == warped.shape == (2, 128, 128, 3)
    changed = (frames != warped).any(-1)
    assert 0.005 < changed.mean() < 0.2  # lines drawn over the warp, nothing else


def test_images_exist_and_are_small(doc):
    for name in re.findall(r"\(images/([\w.-]+\.png)\)", doc):
        path = DOC.parent / "images" / name
        assert path.is_file(), name
        assert path.stat().st_size < 150_000, name


def test_no_unfilled_placeholders(doc):
    assert not re.findall(r"@[A-Z0-9]+@", doc)
