"""Images: load any photo (path or array) as RGB uint8, refusing unreadable or oversized files before decoding them;
save an image atomically."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .errors import ImageLoadError, InputError
from .files import PathLike, atomic_write_bytes


def load_image(path_or_array) -> np.ndarray:
    """An RGB uint8 image ``(H, W, 3)`` from a file path or an array (grayscale and RGBA are converted).

    RGBA images are composited over white, so transparent backgrounds do not turn black.
    """
    if isinstance(path_or_array, np.ndarray):
        img = path_or_array
    else:
        import cv2

        path = Path(path_or_array)
        _check_image_file(path)
        data = np.fromfile(str(path), dtype=np.uint8)
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
        if img is None:
            kind = _image_kind(data[:16].tobytes())
            if kind is not None:
                raise ImageLoadError(
                    f"cannot read image {path}: the {kind} file is truncated or corrupt (it could not "
                    "be decoded); copy or export it again"
                )
            raise ImageLoadError(f"cannot read image {path}: not a supported image file (use PNG, JPEG, BMP or WebP)")
        if img.ndim == 3 and img.shape[2] == 4:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
        elif img.ndim == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return to_rgb_uint8(img)


_IMAGE_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"BM", "BMP"),
    (b"GIF8", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


def _image_kind(head: bytes) -> str | None:
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return next((name for magic, name in _IMAGE_MAGIC if head.startswith(magic)), None)


def _check_image_file(path: Path) -> None:
    """Refuse, before reading it, an image path that is not a regular file, or a file over the size limits (bytes;
    pixels from the header, so an enormous image is refused without decoding it)."""
    import stat

    from .limits import limit

    try:
        st = path.stat()
    except FileNotFoundError:
        raise ImageLoadError(f"image file not found: {path}") from None
    except OSError as exc:
        raise ImageLoadError(f"cannot read image {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        what = (
            "a directory"
            if stat.S_ISDIR(st.st_mode)
            else "a FIFO (named pipe)"
            if stat.S_ISFIFO(st.st_mode)
            else "a device"
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
            else "a socket"
            if stat.S_ISSOCK(st.st_mode)
            else "not a regular file"
        )
        raise ImageLoadError(
            f"cannot read image {path}: it is {what}, not an image file; give an image file (PNG, JPEG, BMP or WebP)"
        )
    max_bytes = limit("max_image_bytes")
    if max_bytes and st.st_size > max_bytes:
        raise ImageLoadError(
            f"image {path} is {st.st_size / 2**20:.0f} MiB, over the limit of {max_bytes / 2**20:.0f} "
            "MiB; use a smaller file (or raise A2K_MAX_IMAGE_BYTES)"
        )
    max_pixels = limit("max_image_pixels")
    if max_pixels:
        size, pixels = _header_size(path)
        if pixels is not None and pixels > max_pixels:
            dims = f"{size[0]}x{size[1]} ({pixels / 1e6:.0f} megapixels)" if size else f"{pixels / 1e6:.0f} megapixels"
            raise ImageLoadError(
                f"image {path} is {dims}, over the limit of {max_pixels / 1e6:g} megapixels; "
                "downscale it (a face needs far fewer pixels), or raise A2K_MAX_IMAGE_PIXELS"
            )


def _header_size(path: Path) -> tuple[tuple[int, int] | None, int | None]:
    """``((width, height), pixels)`` from the image's header (Pillow reads only the header); ``(None, None)`` when
    unknown. Pillow refuses very large images itself (DecompressionBombError), with the pixel count only."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a dependency
        return None, None
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's own DecompressionBombWarning: the limit above decides
            with Image.open(path) as im:
                return im.size, im.size[0] * im.size[1]
    except Image.DecompressionBombError as exc:
        m = re.search(r"\((\d+) pixels\)", str(exc))
        return None, int(m[1]) if m else None
    except Exception:  # noqa: BLE001 - unknown or broken header: decoding reports it
        return None, None


def to_rgb_uint8(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8:
        if np.issubdtype(img.dtype, np.floating) and img.size and img.max() <= 1.0:
            img = img * 255.0
        if img.dtype == np.uint16:
            img = img / 257.0
        img = np.clip(img, 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    elif img.ndim == 3 and img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    elif img.ndim == 3 and img.shape[2] == 4:
        alpha = img[:, :, 3:4].astype(np.float32) / 255.0
        img = (img[:, :, :3].astype(np.float32) * alpha + 255.0 * (1 - alpha)).round().astype(np.uint8)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ImageLoadError(f"expected an image of shape (H, W), (H, W, 3) or (H, W, 4), got {img.shape}")
    if img.shape[0] < 8 or img.shape[1] < 8:
        raise ImageLoadError(f"image is too small ({img.shape[1]}x{img.shape[0]} pixels); use at least 64x64")
    return np.ascontiguousarray(img)


def save_image(path: PathLike, image: np.ndarray) -> None:
    import cv2

    path = Path(path)
    ok, buf = cv2.imencode(path.suffix or ".png", cv2.cvtColor(to_rgb_uint8(image), cv2.COLOR_RGB2BGR))
    if not ok:
        raise InputError(f"cannot encode an image as {path.suffix!r}")
    atomic_write_bytes(path, buf.tobytes())
