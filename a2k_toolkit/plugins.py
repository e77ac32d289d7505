"""The plugin manager: built-in plugins plus third-party ones found through entry points.

``make_plugin_manager()`` is a factory; nothing here keeps global state, so tests build their own managers.
"""

from __future__ import annotations

import importlib
import os
import warnings
from importlib import metadata

import pluggy

from . import hookspecs

ENTRY_POINT_GROUP = "a2k_toolkit"
LOAD_PLUGINS_ENV = "A2K_LOAD_PLUGINS"

# Built-in plugins: modules of this package, registered through the same hooks as third-party code.
DEFAULT_PLUGINS: tuple[str, ...] = (
    "a2k_toolkit.builtin.logmel",
    "a2k_toolkit.builtin.librosa_mel",
    "a2k_toolkit.builtin.stack",
    "a2k_toolkit.builtin.dlib_detector",
    "a2k_toolkit.builtin.fan_detector",
    "a2k_toolkit.builtin.chain_detector",
    "a2k_toolkit.builtin.baselines",
    "a2k_toolkit.builtin.sketch",
    "a2k_toolkit.builtin.warp",
    "a2k_toolkit.builtin.side_by_side",
    "a2k_toolkit.builtin.espeak",
    "a2k_toolkit.builtin.audio2keypoint",
)


def _allowed_distributions() -> set[str] | None:
    """Distribution names listed in ``A2K_LOAD_PLUGINS`` (comma-separated), or None when it is unset."""
    value = os.environ.get(LOAD_PLUGINS_ENV)
    if value is None:
        return None
    return {_canon(v) for v in value.split(",") if v.strip()}


def _canon(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(".", "-")


def load_entry_point_plugins(pm: pluggy.PluginManager) -> list[str]:
    """Register every plugin of the ``a2k_toolkit`` entry-point group (filtered by ``A2K_LOAD_PLUGINS``).

    A plugin that fails to import is skipped with a warning naming its distribution, so one broken package does not
    take the toolkit down. Returns the names of the plugins registered.
    """
    allowed = _allowed_distributions()
    loaded = []
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        dist_name = dist.metadata["Name"] if dist is not None else ep.name
        if allowed is not None and _canon(dist_name) not in allowed:
            continue
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # noqa: BLE001 - a broken third-party plugin must not break the host
            warnings.warn(
                f"a2k plugin {ep.name!r} from distribution {dist_name!r} failed to load and was skipped: {exc}",
                RuntimeWarning,
                stacklevel=2,
            )
            continue
        pm.register(plugin, name=ep.name)
        # remember the distribution for provenance (`a2k plugins list`)
        pm._a2k_distinfo[ep.name] = (dist_name, dist.version if dist is not None else "")  # type: ignore[attr-defined]
        loaded.append(ep.name)
    return loaded


def make_plugin_manager(*, builtins: bool = True, entry_points: bool = True, plugins=()) -> pluggy.PluginManager:
    """A fresh plugin manager with the hook specs, the built-ins, installed plugins and ``plugins`` registered.

    ``plugins`` are extra plugin objects (modules, classes or instances with ``@hookimpl`` functions), useful in
    tests and notebooks.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    pm._a2k_distinfo = {}  # type: ignore[attr-defined]
    if builtins:
        from .version import __version__

        for modname in DEFAULT_PLUGINS:
            pm.register(importlib.import_module(modname), name=modname)
            pm._a2k_distinfo[modname] = ("a2k-toolkit", __version__)  # type: ignore[attr-defined]
    if entry_points:
        load_entry_point_plugins(pm)
    for plugin in plugins:
        pm.register(plugin)
    return pm


def plugin_distribution(pm: pluggy.PluginManager, plugin_name: str) -> tuple[str, str]:
    """``(distribution, version)`` that provided a registered plugin, or ``("", "")`` if registered by hand."""
    return getattr(pm, "_a2k_distinfo", {}).get(plugin_name, ("", ""))
