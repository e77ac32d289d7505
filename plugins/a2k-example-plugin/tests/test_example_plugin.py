"""The example plugin's tests: the toolkit's contract mixins plus its own behaviour."""

from __future__ import annotations

import numpy as np
import pytest

from a2k_example_plugin import HeatmapRenderer, SmoothedGenerator
from a2k_toolkit import ConfigError, Keypoints
from a2k_toolkit.catalog import Catalog
from a2k_toolkit.plugins import make_plugin_manager
from a2k_toolkit.testing import GeneratorContract, RendererContract, mean_face


def host() -> Catalog:
    """The host's catalog: the built-ins plus this plugin (registered by hand, whether or not it is installed)."""
    import a2k_example_plugin

    pm = make_plugin_manager(entry_points=False)
    if pm.get_plugin("example") is None and not pm.is_registered(a2k_example_plugin):
        pm.register(a2k_example_plugin, name="example")
    return Catalog(pm)


class TestHeatmapContract(RendererContract):
    component_class = HeatmapRenderer
    params = {"sigma": 2.0}


class TestSmoothedContract(GeneratorContract):
    component_class = SmoothedGenerator
    params = {"base": "procedural"}

    def make(self, **extra):  # the wrapped generator comes from the host's catalog
        return host().build("generator", "smoothed", {**self.params, **extra})


def test_blob_lands_on_keypoint():
    pts = mean_face(100, 120)[None].astype(np.float32)
    frame = HeatmapRenderer(sigma=2.0).render(Keypoints(pts), np.zeros((100, 120, 3), np.uint8))[0]
    x, y = np.round(pts[0, 30]).astype(int)  # nose tip
    assert frame[y, x].max() > 150
    assert frame[0, 0].max() == 0


def test_smoothing_reduces_jerk():
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((100, 320)).astype(np.float32)
    ref = Keypoints(mean_face()[None])
    catalog = host()
    raw = SmoothedGenerator(base="procedural", sigma=0.01, catalog=catalog).generate(feats, ref, seed=0).points
    smooth = SmoothedGenerator(base="procedural", sigma=3.0, catalog=catalog).generate(feats, ref, seed=0).points
    jerk = lambda p: np.abs(np.diff(p, 3, axis=0)).mean()  # noqa: E731
    assert jerk(smooth) < 0.5 * jerk(raw)


def test_base_is_a_nested_component_checked_with_the_config():
    from a2k_toolkit import Pipeline
    from a2k_toolkit.config import load_config, validate_components

    catalog = host()
    bad = {"generator": {"name": "smoothed", "params": {"base": {"name": "procedural", "params": {"mouth_opn": 1}}}}}
    with pytest.raises(ConfigError, match=r"generator\.params\.base\.params\.mouth_opn: unknown key"):
        validate_components(load_config(bad), catalog)
    pipe = Pipeline.from_config(
        {
            "generator": {
                "name": "smoothed",
                "params": {"base": {"name": "procedural", "params": {"mouth_open": 1.0}}},
            },
            "renderer": None,
            "device": "cpu",
        },
        plugins=catalog,
    )
    assert pipe.generator._base.params.mouth_open == 1.0  # built by the host's catalog, params as given
    with pytest.raises(ConfigError, match="host's catalog"):
        SmoothedGenerator().generate(np.zeros((3, 320), np.float32), Keypoints(mean_face()[None]))


def test_base_params_still_accepted_with_a_warning():
    with pytest.warns(DeprecationWarning, match="base_params"):
        gen = SmoothedGenerator(base="procedural", base_params={"mouth_open": 0.5}, catalog=host())
    assert gen.params.base.name == "procedural" and gen._base.params.mouth_open == 0.5
