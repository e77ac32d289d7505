"""Resource limits on inputs and outputs, each overridable by an environment variable (see docs/config.md, Limits).

The limits are read when they are checked, so a variable set before a call (or before a run) applies to it."""

from __future__ import annotations

import os

from .errors import ConfigError

# name -> (environment variable, default, what it bounds)
LIMITS = {
    "max_image_pixels": ("A2K_MAX_IMAGE_PIXELS", 100_000_000, "pixels of an input image (read from its header)"),
    "max_image_bytes": ("A2K_MAX_IMAGE_BYTES", 200 * 2**20, "bytes of an input image file"),
    "max_render_side": ("A2K_MAX_RENDER_SIDE", 1920, "longest side of a video whose renderer has no `size`"),
    # the web demo (integrations/gradio)
    "demo_max_upload_bytes": ("A2K_DEMO_MAX_UPLOAD_BYTES", 50 * 2**20, "bytes of a file uploaded to the web demo"),
    "demo_max_audio_seconds": ("A2K_DEMO_MAX_AUDIO_SECONDS", 120, "seconds of speech uploaded to the web demo"),
    "demo_keep_outputs": ("A2K_DEMO_KEEP_OUTPUTS", 4, "per-request output folders the web demo keeps"),
}


def limit(name: str) -> int:
    """The current value of limit ``name`` (its environment variable, else the default); 0 disables it."""
    var, default, what = LIMITS[name]
    raw = os.environ.get(var, "").strip()
    if not raw:
        return default
    try:
        value = int(float(raw))
    except ValueError:
        raise ConfigError(
            f"{var}={raw!r} is not a number; set it to the largest allowed {what}, or 0 for no limit"
        ) from None
    if value < 0:
        raise ConfigError(f"{var}={raw!r} is negative; set it to the largest allowed {what}, or 0 for no limit")
    return value
