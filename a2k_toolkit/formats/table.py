"""The table of keypoint formats: the toolkit's own, and those plugins register through the
``register_keypoint_formats`` hook (:func:`add_plugin_formats`).

A plugin's hook implementation calls ``register(name, *, read=None, write=None, extensions=(), folder=False,
description="", lossy="", detect=None, owns=None)`` once per format (docs/plugins.md). Its formats join
:data:`FORMATS` under their names (a built-in name cannot be taken); an extension no other format uses means the
plugin's format, and for a shared one (``.json``, ``.csv``) its ``detect(path)`` tells its files by their content.
This package sits below the plugin machinery, so it never loads plugins itself: the host hands it its plugin
manager (``Pipeline.from_config``, the pose stage, ``a2k convert``, ``a2k config validate`` do).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import DuplicateComponentError, InputError, PluginError
from ..keypoints import Keypoints
from . import native, openface, openpose, pose_images, pts

HOOK = "register_keypoint_formats"
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")


@dataclass(frozen=True)
class Format:
    """One keypoint format: ``read(path, *, image_size, missing) -> Keypoints``, ``write(path, keypoints,
    **options)``; ``owns(name)`` tells the files it writes into a folder (those an output may replace);
    ``detect(path)`` tells a file of one of its extensions that another format also uses (``.json``, ``.csv``) by
    its content; ``plugin`` names the plugin that registered it ("" for the toolkit's own)."""

    name: str
    description: str
    extensions: tuple[str, ...] = ()
    folder: bool = False
    read: Callable[..., Keypoints] | None = None
    write: Callable[..., None] | None = None
    owns: Callable[[str], bool] | None = None
    lossy: str = ""
    options: tuple[str, ...] = field(default=())
    detect: Callable[[Path], bool] | None = None
    plugin: str = ""

    @property
    def forms(self) -> str:
        parts = list(self.extensions) + (["folder/"] if self.folder else [])
        return ", ".join(parts)

    @property
    def directions(self) -> str:
        return "/".join(d for d, f in (("read", self.read), ("write", self.write)) if f is not None)


def _options(fn) -> tuple[str, ...]:
    return tuple(p.name for p in inspect.signature(fn).parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY)


def _format(**kw) -> Format:
    fmt = Format(**kw)
    return replace(fmt, options=_options(fmt.write) if fmt.write else ())


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        _format(
            name="npy",
            description="plain float32 array (T, 68, 2)",
            extensions=(".npy",),
            read=native.read_npy,
            write=native.write_npy,
            lossy="fps, image size and meta are not stored",
        ),
        _format(
            name="npz",
            description="array + fps, image size, layout, meta",
            extensions=(".npz",),
            read=native.read_npz,
            write=native.write_npz,
        ),
        _format(
            name="json",
            description="a2k keypoints JSON: fps, image size, layout and parts, one list of points per frame",
            extensions=(".json",),
            read=native.read_json,
            write=native.write_json,
        ),
        _format(
            name="openpose",
            description="OpenPose face JSON (version 1.3), 70 points with pupils, one file per frame",
            extensions=(".json",),
            folder=True,
            read=openpose.read,
            write=openpose.write,
            owns=openpose.owns,
            lossy="fps, image size (unless normalized) and meta are not stored; the pupils are estimated",
        ),
        _format(
            name="pose-images",
            description="OpenPose-style face pose images (white dots on black) for ControlNet/DWPose, PNG or MP4",
            extensions=(".mp4",),
            folder=True,
            write=pose_images.write,
            owns=pose_images.owns,
            lossy="write only (the points' order cannot be read back); pixel positions; MP4 is compressed",
        ),
        _format(
            name="openface",
            description="CSV with OpenFace 2.0 columns (frame, timestamp, confidence, success, x_i, y_i)",
            extensions=(".csv",),
            read=openface.read,
            write=openface.write,
            lossy="image size and meta are not stored; fps kept to 1 ms timestamps",
        ),
        _format(
            name="pts",
            description="iBUG/300-W .pts landmarks (1-based), one file per face; a folder is a sequence",
            extensions=(".pts",),
            folder=True,
            read=pts.read,
            write=pts.write,
            owns=pts.owns,
            lossy="fps, image size and meta are not stored",
        ),
    )
}

# the format an extension means when nothing else says (.json: the toolkit's own; its readers sniff the content)
BY_EXTENSION = {".npy": "npy", ".npz": "npz", ".json": "json", ".csv": "openface", ".pts": "pts", ".mp4": "pose-images"}
DEFAULT_FOLDER_FORMAT = "openpose"


def get_format(name: str) -> Format:
    try:
        return FORMATS[name]
    except KeyError:
        hint = "" if _added else "; formats from plugins are added by formats.add_plugin_formats(make_plugin_manager())"
        raise InputError(f"unknown keypoint format {name!r}; known: {', '.join(FORMATS)}{hint}") from None


def plugin_formats() -> list[Format]:
    """The formats plugins registered, in registration order."""
    return [f for f in FORMATS.values() if f.plugin]


# --------------------------------------------------------------------------------------------- from plugins

_added = False  # whether a host has handed its plugins' formats over yet


def plugin_formats_added() -> bool:
    """Whether :func:`add_plugin_formats` ran (a host loaded its plugins' formats)."""
    return _added


def add_plugin_formats(pm: Any) -> list[str]:
    """Run the ``register_keypoint_formats`` hook of ``pm`` (a pluggy plugin manager, as
    :func:`a2k_toolkit.plugins.make_plugin_manager` makes): every format a plugin registers joins :data:`FORMATS`.
    Registering the same format again (another manager with the same plugin) changes nothing; a name that is the
    toolkit's or another plugin's is a :class:`~a2k_toolkit.errors.DuplicateComponentError`. Returns the names
    registered."""
    global _added
    hook = getattr(pm.hook, HOOK, None)
    names: list[str] = []
    for impl in reversed(hook.get_hookimpls()) if hook is not None else ():
        impl.function(register=_registrar(impl.plugin_name, names))
    _added = True
    return names


def _registrar(plugin: str, names: list[str]):
    def register(
        name: str,
        *,
        read: Callable[..., Keypoints] | None = None,
        write: Callable[..., None] | None = None,
        extensions: tuple[str, ...] | list[str] = (),
        folder: bool = False,
        description: str = "",
        lossy: str = "",
        detect: Callable[[Path], bool] | None = None,
        owns: Callable[[str], bool] | None = None,
    ) -> Format:
        what = f"plugin {plugin!r} registered the keypoint format {name!r}"
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise PluginError(f"{what}: a format's name is lower-case letters, digits, '-' and '_'")
        if read is None and write is None:
            raise PluginError(f"{what} with neither a reader nor a writer")
        for fn in (read, write, detect, owns):
            if fn is not None and not callable(fn):
                raise PluginError(f"{what} with {fn!r}, which is not callable")
        exts = tuple(str(e).lower() for e in extensions)
        if any(not re.fullmatch(r"\.[a-z0-9][a-z0-9.]*", e) for e in exts) or not (exts or folder):
            raise PluginError(f"{what}: give its file extensions ('.json', ...) or folder=True, got {extensions!r}")
        if folder and owns is None:
            raise PluginError(f"{what} as a folder format without owns(name) (which files of a folder are its)")
        fmt = _format(
            name=name, description=description or name, extensions=exts, folder=bool(folder), read=read,
            write=write, owns=owns, lossy=lossy, detect=detect, plugin=plugin,
        )  # fmt: skip
        old = FORMATS.get(name)
        if old is not None and (old.read, old.write, old.detect) != (read, write, detect):
            by = f"plugin {old.plugin!r}" if old.plugin else "a2k-toolkit itself"
            raise DuplicateComponentError(
                f"keypoint format {name!r} is registered twice: by {by} and by plugin {plugin!r}; uninstall one, or "
                "limit plugins with A2K_LOAD_PLUGINS"
            )
        if old is None:
            FORMATS[name] = fmt
            for ext in exts:
                BY_EXTENSION.setdefault(ext, name)  # an extension no other format uses means this one
            names.append(name)
        return FORMATS[name]

    return register


def sniff(path: Path) -> Format | None:
    """The plugin format whose ``detect`` claims the file ``path`` (of one of its extensions), if any. A detector
    that fails counts as "not mine": it never stops the toolkit's own formats from being read."""
    ext = path.suffix.lower()
    for fmt in plugin_formats():
        if fmt.detect is not None and fmt.read is not None and ext in fmt.extensions:
            try:
                if fmt.detect(path):
                    return fmt
            except Exception:  # noqa: BLE001 - a plugin's content check must not break reading other formats
                continue
    return None
