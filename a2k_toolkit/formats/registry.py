"""Reading and writing keypoints through the table of formats (:mod:`.table`: the toolkit's own and plugins').

A format is a name, the file extensions it uses, whether it also takes the form of a folder of per-frame files, and
its reader and writer (either may be missing: pose images cannot be read back). Formats are inferred from a path:
a file's extension (a ``.json`` file's content tells OpenPose from the toolkit's own JSON), a folder's files; an
output that names a folder (an existing one, or a path ending in ``/``) defaults to OpenPose JSON.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .. import io
from ..errors import A2KError, InputError, PluginError
from ..keypoints import Keypoints
from . import openpose, pose_images
from ._common import check_replaceable
from .table import BY_EXTENSION, DEFAULT_FOLDER_FORMAT, FORMATS, Format, get_format, sniff

PathLike = str | os.PathLike


def output_extensions() -> tuple[str, ...]:
    """Every file extension a keypoint output may have (folder outputs aside)."""
    return tuple(ext for ext, name in BY_EXTENSION.items() if FORMATS[name].write is not None)


def _folder_like(path: PathLike) -> bool:
    text = os.fspath(path)
    return text.endswith(("/", os.sep)) or Path(text).is_dir()


def _use(exts: tuple[str, ...]) -> str:
    return exts[0] if len(exts) == 1 else ", ".join(exts[:-1]) + " or " + exts[-1]


def output_format(path: PathLike, format: str | None = None) -> Format:
    """The format an output path means (``format`` names it explicitly), checked against the path's form."""
    p = Path(path)
    folder = _folder_like(path)
    if format is not None:
        fmt = get_format(format)
        if fmt.write is None:
            raise InputError(f"the {fmt.name} format cannot be written")
        folder = folder or (not p.suffix and fmt.folder)
        if folder and not fmt.folder:
            raise InputError(f"{fmt.name} writes a file ({_use(fmt.extensions)}), not a folder: {path}")
        if not folder and p.suffix.lower() not in fmt.extensions:
            form = _use(fmt.extensions) + (" or a folder (a path ending in '/')" if fmt.folder else "")
            raise InputError(f"{fmt.name} output {path} has {_what_suffix(p)}; use {form}")
        return fmt
    if folder:
        return FORMATS[DEFAULT_FOLDER_FORMAT]
    name = BY_EXTENSION.get(p.suffix.lower())
    if name is None:
        raise InputError(
            f"keypoint output {path} has {_what_suffix(p)}; use {_use(output_extensions())}, or a folder (a path "
            "ending in '/') for OpenPose JSON per frame (other formats: --to / format=)"
        )
    return FORMATS[name]


def _what_suffix(p: Path) -> str:
    return f"unsupported extension {p.suffix!r}" if p.suffix else "no extension"


def _is_folder_output(path: PathLike, fmt: Format) -> bool:
    p = Path(path)
    return fmt.folder and (_folder_like(path) or p.suffix.lower() not in fmt.extensions)


def check_output(path: PathLike, format: str | None = None, *, what: str = "keypoint output") -> Format:
    """Before any work: the format ``path`` means, and that it can be written (see :func:`io.check_output_path`;
    an existing folder output may hold only files of its format, which the output replaces)."""
    fmt = output_format(path, format)
    if _is_folder_output(path, fmt):
        target = Path(path)
        check_replaceable(target, fmt.owns, f"{what} {target}")
        io.check_output_folder(target.absolute().parent, what=f"{what} {target}")
    else:
        io.check_output_path(path, None, what=what)
    return fmt


def _check_options(fmt: Format, options: dict[str, Any]) -> None:
    unknown = sorted(set(options) - set(fmt.options))
    if unknown:
        known = ", ".join(fmt.options) or "none"
        raise InputError(f"the {fmt.name} format has no option {unknown[0]!r} (its options: {known})")


@contextlib.contextmanager
def staged(path: PathLike | None, format: str | Format | None = None) -> Iterator[Path | None]:
    """A temporary beside ``path`` (a file, or a folder for a folder output) that replaces ``path`` when the block
    succeeds and is removed when it fails; ``None`` for a ``None`` path."""
    if path is None:
        yield None
        return
    fmt = format if isinstance(format, Format) else output_format(path, format)
    if _is_folder_output(path, fmt):
        what = f"{fmt.name} output"  # a folder holding other files is refused, before the write and before the swap
        with io.atomic_folder(path, check=lambda target: check_replaceable(target, fmt.owns, what)) as tmp:
            yield tmp
    else:
        with io.atomic_path(path) as tmp:  # the temporary keeps the extension, which selects a file form
            yield tmp


def _prepare(path: PathLike, keypoints: Keypoints, format, stem: str | None, options: dict[str, Any]) -> Format:
    if not isinstance(keypoints, Keypoints):
        raise InputError(f"expected a Keypoints sequence, got {type(keypoints).__name__}")
    fmt = format if isinstance(format, Format) else output_format(path, format)
    if fmt.write is None:
        raise InputError(f"the {fmt.name} format cannot be written")
    if "stem" in fmt.options and _is_folder_output(path, fmt):
        options["stem"] = stem or Path(path).name  # the files are named after the output, not its temporary
    _check_options(fmt, options)
    return fmt


@contextlib.contextmanager
def staged_write(
    path: PathLike | None,
    keypoints: Keypoints,
    format: str | Format | None = None,
    *,
    stem: str | None = None,
    **options: Any,
) -> Iterator[Format | None]:
    """Write ``keypoints`` to a temporary beside ``path`` at once; rename it over ``path`` only when the block
    succeeds (for outputs that belong together: the keypoints and a video). ``None`` writes nothing."""
    if path is None:
        yield None
        return
    fmt = _prepare(path, keypoints, format, stem, options)
    with staged(path, fmt) as tmp:
        fmt.write(tmp, keypoints, **options)
        yield fmt


def write(
    path: PathLike,
    keypoints: Keypoints,
    format: str | Format | None = None,
    *,
    atomic: bool = True,
    stem: str | None = None,
    **options: Any,
) -> Format:
    """Write ``keypoints`` to ``path`` in ``format`` (inferred from the path when None), atomically: a file through a
    temporary file, a folder through a temporary folder renamed into place (an existing folder may hold only files
    of this format). ``stem`` names the files of a folder output (default: the folder's name); ``options`` are the
    format's own (``Format.options``: ``normalized`` for openpose, ``radius`` and ``pupils`` for pose-images).
    ``atomic=False`` writes straight to ``path``. Returns the format."""
    if not atomic:
        fmt = _prepare(path, keypoints, format, stem, options)
        fmt.write(Path(path), keypoints, **options)
        return fmt
    with staged_write(path, keypoints, format, stem=stem, **options) as fmt:
        return fmt


def input_format(path: PathLike, format: str | None = None) -> Format:
    """The format of an existing input: ``format`` when given, else from a folder's files or a file's extension
    (and, for ``.json``, its content; for an extension a plugin's format shares, that format's ``detect``)."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"keypoint input not found: {path}")
    if format is not None:
        fmt = get_format(format)
        if fmt.read is None:
            raise InputError(f"{fmt.name} cannot be read back: {fmt.lossy}")
        return fmt
    if p.is_dir():
        names = [c.name for c in p.iterdir() if c.is_file()]
        folders = [f for f in FORMATS.values() if f.folder and f.read is not None and f.owns is not None]
        for fmt in folders:  # openpose, pts, then plugins' folder formats
            if any(fmt.owns(n) for n in names):
                return fmt
        if any(pose_images.owns(n) or n.lower().endswith(".png") for n in names):
            raise InputError(
                f"{path} holds pose images, which cannot be read back as keypoints: {FORMATS['pose-images'].lossy}"
            )
        raise InputError(f"{path} holds no keypoint files (*_keypoints.json from OpenPose, or .pts)")
    ext = p.suffix.lower()
    if ext == ".json" and _json_is_openpose(p):
        return FORMATS["openpose"]
    fmt = sniff(p)  # a plugin's format that shares the extension and recognises the content
    if fmt is not None:
        return fmt
    name = BY_EXTENSION.get(ext)
    if name is None or FORMATS[name].read is None:
        readable = sorted({e for e, n in BY_EXTENSION.items() if FORMATS[n].read is not None})
        raise InputError(
            f"keypoint input {path} has {_what_suffix(p)}; readable: {_use(tuple(readable))} files, or folders of "
            "OpenPose JSON / .pts files"
        )
    return FORMATS[name]


def _json_is_openpose(path: Path) -> bool:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read keypoint file {path}: {exc}") from None
    return openpose.is_openpose(data)


def read(
    path: PathLike,
    format: str | None = None,
    *,
    fps: float | None = None,
    image_size: tuple[int, int] | None = None,
    missing: str = "error",
) -> Keypoints:
    """Read keypoints from a file or folder in any readable format (inferred when ``format`` is None).

    ``fps`` sets the frame rate (formats that store none read as 25 fps); ``image_size`` ``(height, width)`` is
    the image the points are in, for formats that store none (and for normalised OpenPose coordinates); a file
    that stores another size is refused (nothing is rescaled). ``missing`` is what to do with frames without a face
    (OpenPose, OpenFace): ``"error"`` or ``"hold"`` (repeat the previous face)."""
    fmt = input_format(path, format)
    if image_size is not None:
        image_size = _size(image_size)
    kp = _read_with(fmt, Path(path), image_size, missing)
    if image_size is not None:
        if kp.image_size is not None and tuple(kp.image_size) != image_size:
            raise InputError(
                f"{path} is for a {kp.image_size[1]}x{kp.image_size[0]} image, not {image_size[1]}x{image_size[0]}; "
                "convert does not rescale points (leave the size out, or give the one the file says)"
            )
        kp.image_size = image_size
    if fps is not None:
        if not (isinstance(fps, (int, float)) and fps > 0):
            raise InputError(f"fps must be a positive number, got {fps!r}")
        kp.fps = float(fps)
    return kp


def _read_with(fmt: Format, path: Path, image_size, missing: str) -> Keypoints:
    if not fmt.plugin:
        return fmt.read(path, image_size=image_size, missing=missing)
    try:  # a plugin's reader: its own errors as they are, anything else as an error naming the plugin
        kp = fmt.read(path, image_size=image_size, missing=missing)
    except A2KError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise PluginError(f"the {fmt.name} reader of plugin {fmt.plugin!r} failed on {path}: {exc}") from exc
    if not isinstance(kp, Keypoints):
        raise PluginError(f"the {fmt.name} reader of plugin {fmt.plugin!r} returned {type(kp).__name__}, not Keypoints")
    return kp


def _size(size) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise InputError(f"an image size is (height, width), got {size!r}") from None
    if h <= 0 or w <= 0:
        raise InputError(f"an image size must be positive, got {w}x{h}")
    return h, w
