"""Plugin system: every hook, provenance, duplicates, wrong base classes, entry points, A2K_LOAD_PLUGINS."""

from __future__ import annotations

import subprocess
import sys

import pytest

from a2k_toolkit import hookimpl
from a2k_toolkit.catalog import Catalog
from a2k_toolkit.components import KIND_HOOKS
from a2k_toolkit.errors import DuplicateComponentError, PluginError, UnknownComponentError
from a2k_toolkit.plugins import DEFAULT_PLUGINS, make_plugin_manager
from a2k_toolkit.testing import (
    DummyDetector,
    DummyEncoder,
    DummyFrontend,
    DummyGenerator,
    DummyPlugin,
    DummyRenderer,
    DummySpeech,
)

DUMMIES = {
    "audio": DummyFrontend,
    "speech": DummySpeech,
    "detector": DummyDetector,
    "encoder": DummyEncoder,
    "generator": DummyGenerator,
    "renderer": DummyRenderer,
}


@pytest.mark.parametrize("kind", sorted(KIND_HOOKS))
def test_each_hook_registers_its_kind_with_provenance(kind):
    cls = DUMMIES[kind]

    class OnePlugin:
        pass

    setattr(OnePlugin, KIND_HOOKS[kind], staticmethod(hookimpl(lambda register: register(cls))))
    pm = make_plugin_manager(entry_points=False)
    pm.register(OnePlugin(), name="one-plugin")
    catalog = Catalog(pm)
    entry = catalog.entry(kind, cls.name)
    assert entry.cls is cls
    assert entry.plugin == "one-plugin"
    # registered only under its own kind
    for other in KIND_HOOKS:
        if other != kind:
            assert cls.name not in catalog.names(other)


def test_builtins_are_registered_through_the_same_hooks(catalog):
    by_plugin = {e.name: e for e in catalog.entries()}
    for name, module in [
        ("logmel", "logmel"),
        ("dlib", "dlib_detector"),
        ("static", "baselines"),
        ("procedural", "baselines"),
        ("sketch", "sketch"),
        ("espeak", "espeak"),
    ]:
        assert by_plugin[name].plugin == f"a2k_toolkit.builtin.{module}"
        assert by_plugin[name].distribution == "a2k-toolkit"
    assert all(m.startswith("a2k_toolkit.builtin.") for m in DEFAULT_PLUGINS)


def test_duplicate_name_is_an_error_naming_both_plugins():
    class Clash:
        @hookimpl
        def register_renderers(self, register):
            register(type("OtherSketch", (DummyRenderer,), {"name": "sketch"}))

    pm = make_plugin_manager(entry_points=False)
    pm.register(Clash(), name="clashing-plugin")
    with pytest.raises(DuplicateComponentError) as exc:
        Catalog(pm)
    msg = str(exc.value)
    assert "a2k_toolkit.builtin.sketch" in msg and "clashing-plugin" in msg and "'sketch'" in msg


def test_same_name_in_different_kinds_is_fine():
    class Both:
        @hookimpl
        def register_renderers(self, register):
            register(type("R", (DummyRenderer,), {"name": "twin"}))

        @hookimpl
        def register_generators(self, register):
            register(type("G", (DummyGenerator,), {"name": "twin"}))

    catalog = Catalog(make_plugin_manager(entry_points=False, plugins=[Both()]))
    assert catalog.get("renderer", "twin").kind == "renderer"
    assert catalog.get("generator", "twin").kind == "generator"


def test_wrong_base_class_is_rejected():
    class Wrong:
        @hookimpl
        def register_renderers(self, register):
            register(DummyGenerator)  # a generator offered as a renderer

    with pytest.raises(PluginError, match="not a subclass of a2k_toolkit.Renderer"):
        Catalog(make_plugin_manager(entry_points=False, plugins=[Wrong()]))


def test_instances_and_nameless_classes_are_rejected():
    class Instance:
        @hookimpl
        def register_renderers(self, register):
            register(DummyRenderer())

    class Nameless:
        @hookimpl
        def register_renderers(self, register):
            register(type("NoName", (DummyRenderer,), {"name": ""}))

    with pytest.raises(PluginError, match="not a subclass"):
        Catalog(make_plugin_manager(entry_points=False, plugins=[Instance()]))
    with pytest.raises(PluginError, match="non-empty `name`"):
        Catalog(make_plugin_manager(entry_points=False, plugins=[Nameless()]))


def test_unknown_name_lists_available_and_closest(catalog):
    with pytest.raises(UnknownComponentError) as exc:
        catalog.get("renderer", "skecth")
    msg = str(exc.value)
    assert "did you mean 'sketch'" in msg and "available:" in msg and "sketch" in msg


def test_dummy_plugin_registers_every_kind():
    catalog = Catalog(make_plugin_manager(builtins=False, entry_points=False, plugins=[DummyPlugin()]))
    for kind, cls in DUMMIES.items():
        assert catalog.names(kind) == [cls.name]


def test_managers_are_independent():
    a = Catalog(make_plugin_manager(entry_points=False, plugins=[DummyPlugin()]))
    b = Catalog(make_plugin_manager(entry_points=False))
    assert "dummy-renderer" in a.names("renderer") and "dummy-renderer" not in b.names("renderer")


# -------------------------------------------------- entry points: the example plugin is really installed (make test)


def _list(env_extra=None):
    import json
    import os

    env = dict(os.environ)
    env.pop("A2K_LOAD_PLUGINS", None)
    env.update(env_extra or {})
    out = subprocess.run(
        [sys.executable, "-m", "a2k_toolkit.cli", "plugins", "list", "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    return {(r["kind"], r["name"]): r for r in json.loads(out)}


def test_entry_point_plugin_discovered_with_distribution_and_version():
    pytest.importorskip("a2k_example_plugin", reason="install plugins/a2k-example-plugin (make test does)")
    rows = _list()
    heat = rows[("renderer", "heatmap")]
    assert heat["distribution"] == "a2k-example-plugin" and heat["version"] == "0.1.0"
    assert rows[("generator", "smoothed")]["distribution"] == "a2k-example-plugin"
    assert rows[("renderer", "sketch")]["distribution"] == "a2k-toolkit"


def test_a2k_load_plugins_limits_distributions():
    pytest.importorskip("a2k_example_plugin", reason="install plugins/a2k-example-plugin (make test does)")
    assert ("renderer", "heatmap") not in _list({"A2K_LOAD_PLUGINS": ""})
    assert ("renderer", "heatmap") not in _list({"A2K_LOAD_PLUGINS": "some-other-dist"})
    assert ("renderer", "heatmap") in _list({"A2K_LOAD_PLUGINS": "a2k-example-plugin"})
    # built-ins always load
    assert ("renderer", "sketch") in _list({"A2K_LOAD_PLUGINS": ""})


def test_entry_point_plugin_usable_from_config(sample_image_path, sample_speech_path):
    pytest.importorskip("a2k_example_plugin", reason="install plugins/a2k-example-plugin (make test does)")
    from a2k_toolkit import Pipeline

    pipe = Pipeline.from_config({"detector": "dlib", "renderer": {"name": "heatmap", "params": {"size": 64}}})
    res = pipe(image=sample_image_path, audio=sample_speech_path)
    first = next(res.iter_frames())
    assert first.shape == (64, 64, 3) and first.max() > 0


def test_every_hook_is_documented_with_its_signature():
    from pathlib import Path

    from a2k_toolkit import hookspecs

    doc = (Path(__file__).resolve().parents[1] / "docs" / "plugins.md").read_text()
    for hook in KIND_HOOKS.values():
        assert hasattr(hookspecs, hook)
        assert f"def {hook}(register)" in doc, f"docs/plugins.md lacks the signature of {hook}"
