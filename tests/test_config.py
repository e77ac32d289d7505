"""Config: shapes, shorthand, file formats, unknown keys, per-component params errors pointing at the key."""

from __future__ import annotations

import json

import pytest

from a2k_toolkit.config import ComponentSpec, PipelineConfig, config_schema, load_config, validate_components
from a2k_toolkit.errors import ConfigError, UnknownComponentError


def test_defaults_and_bare_string_shorthand():
    cfg = load_config({"renderer": "sketch", "generator": {"name": "static"}})
    assert cfg.renderer == ComponentSpec(name="sketch", params={})
    assert cfg.generator.name == "static"
    assert cfg.audio is None  # unset: the generator's front-end (see test_audio_slot_defaults_to_the_generators)
    assert load_config(None) == PipelineConfig()


def test_renderer_may_be_null():
    assert load_config({"renderer": None}).renderer is None


@pytest.mark.parametrize("ext", [".yaml", ".json", ".toml"])
def test_loads_yaml_json_toml(tmp_path, ext):
    text = {
        ".yaml": "generator: static\nrenderer:\n  name: sketch\n  params: {size: 128}\nseed: 7\n",
        ".json": json.dumps(
            {"generator": "static", "renderer": {"name": "sketch", "params": {"size": 128}}, "seed": 7}
        ),
        ".toml": 'generator = "static"\nseed = 7\n[renderer]\nname = "sketch"\nparams = {size = 128}\n',
    }[ext]
    path = tmp_path / f"c{ext}"
    path.write_text(text)
    cfg = load_config(path)
    assert cfg.generator.name == "static" and cfg.renderer.params == {"size": 128} and cfg.seed == 7


def test_unknown_top_level_key_rejected():
    with pytest.raises(ConfigError, match=r"rendrer: unknown key"):
        load_config({"rendrer": "sketch"})


def test_unknown_spec_key_rejected():
    with pytest.raises(ConfigError, match=r"renderer.parms: unknown key"):
        load_config({"renderer": {"name": "sketch", "parms": {}}})


def test_params_validated_by_component_with_key_path(catalog):
    cfg = load_config({"renderer": {"name": "sketch", "params": {"size": "big"}}})
    with pytest.raises(ConfigError, match=r"renderer\.params\.size: "):
        validate_components(cfg, catalog)
    cfg = load_config({"renderer": {"name": "sketch", "params": {"colour": "red"}}})
    with pytest.raises(ConfigError, match=r"renderer\.params\.colour: unknown key"):
        validate_components(cfg, catalog)


def test_unknown_component_name(catalog):
    with pytest.raises(UnknownComponentError, match=r"unknown generator 'procedual' \(did you mean 'procedural'\?\)"):
        validate_components(load_config({"generator": "procedual"}), catalog)


def test_bad_device_and_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="unknown device 'gpu'"):
        load_config({"device": "gpu"})
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("renderer: [unclosed\n")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_config(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        load_config(lst)
    ini = tmp_path / "c.ini"
    ini.write_text("x")
    with pytest.raises(ConfigError, match="unsupported config file type"):
        load_config(ini)


def test_schema_lists_slots():
    schema = config_schema()
    assert {"audio", "detector", "generator", "renderer", "speech", "device", "seed"} <= set(schema["properties"])
