"""Run the ``register_*`` hooks into name -> class tables, one per component kind, with provenance."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

import pluggy
from pydantic import BaseModel

from .components import KIND_BASES, KIND_HOOKS, Component
from .config import ComponentSpec, validate_spec
from .errors import DuplicateComponentError, PluginError, UnknownComponentError
from .plugins import make_plugin_manager, plugin_distribution


@dataclass(frozen=True)
class Entry:
    """One registered component class and where it came from."""

    kind: str
    name: str
    cls: type[Component]
    plugin: str  # the plugin (module / entry point) name that registered it
    distribution: str  # the installed distribution providing that plugin ("" if registered by hand)
    version: str


class Catalog:
    """Name -> component class tables built from a plugin manager's ``register_*`` hooks."""

    def __init__(self, pm: pluggy.PluginManager | None = None):
        self.pm = pm if pm is not None else make_plugin_manager()
        self._tables: dict[str, dict[str, Entry]] = {kind: {} for kind in KIND_BASES}
        for kind, hook_name in KIND_HOOKS.items():
            hook = getattr(self.pm.hook, hook_name)
            # call each implementation separately so every registration is attributed to its plugin
            for impl in reversed(hook.get_hookimpls()):
                impl.function(register=self._registrar(kind, impl.plugin_name))

    def _registrar(self, kind: str, plugin_name: str):
        base = KIND_BASES[kind]
        dist, version = plugin_distribution(self.pm, plugin_name)

        def register(cls):
            if not (isinstance(cls, type) and issubclass(cls, base)):
                raise PluginError(
                    f"plugin {plugin_name!r} registered {cls!r} as a {kind} component, but it is not a subclass of "
                    f"a2k_toolkit.{base.__name__}"
                )
            name = getattr(cls, "name", "")
            if not isinstance(name, str) or not name.strip():
                raise PluginError(f"plugin {plugin_name!r} registered {cls.__name__} without a non-empty `name`")
            existing = self._tables[kind].get(name)
            if existing is not None:
                raise DuplicateComponentError(
                    f"{kind} component {name!r} is registered twice: by plugin {existing.plugin!r} "
                    f"({existing.cls.__module__}.{existing.cls.__qualname__}) and by plugin {plugin_name!r} "
                    f"({cls.__module__}.{cls.__qualname__}); uninstall one, or limit plugins with A2K_LOAD_PLUGINS"
                )
            self._tables[kind][name] = Entry(kind, name, cls, plugin_name, dist, version)
            return cls

        return register

    def names(self, kind: str) -> list[str]:
        return sorted(self._tables[kind])

    def entry(self, kind: str, name: str) -> Entry:
        table = self._tables.get(kind)
        if table is None:
            raise KeyError(f"unknown component kind {kind!r}; kinds: {', '.join(KIND_BASES)}")
        if name not in table:
            close = difflib.get_close_matches(name, list(table), n=1, cutoff=0.5)
            raise UnknownComponentError(kind, name, list(table), close[0] if close else None)
        return table[name]

    def get(self, kind: str, name: str) -> type[Component]:
        return self.entry(kind, name).cls

    def build(
        self,
        kind: str,
        spec: ComponentSpec | str,
        params: BaseModel | dict[str, Any] | None = None,
        *,
        where: str | None = None,
        what: str = "config",
    ) -> Component:
        """An instance of a component of ``kind``, from a :class:`~a2k_toolkit.config.ComponentSpec` or from a name
        and ``params``.

        A spec's params are validated with every component spec nested in them
        (:func:`~a2k_toolkit.config.validate_spec`; error key paths start at ``where``, default the kind), or taken as
        they are when the config already validated them. This catalog is the build context: a component that contains
        components (``uses_catalog``) gets it as ``catalog=``, so that it builds its parts from the host's plugins,
        never from a catalog of its own."""
        if isinstance(spec, ComponentSpec):
            if params is not None:
                raise TypeError("give either a spec or a name with params, not a spec and params")
            params = validate_spec(spec, self, where or kind, kind=kind, what=what)
            spec = spec.name
        cls = self.get(kind, spec)
        return cls(params, catalog=self) if cls.uses_catalog else cls(params)

    def entries(self, kind: str | None = None) -> list[Entry]:
        kinds = [kind] if kind else list(self._tables)
        return [self._tables[k][n] for k in kinds for n in sorted(self._tables[k])]
