"""Errors raised by a2k-toolkit.

Every error a user can cause derives from :class:`A2KError`; its message names the problem and the fix, and the CLI
prints it as one line without a traceback.
"""

from __future__ import annotations


class A2KError(Exception):
    """Base class of every user-facing error in a2k-toolkit."""


class ConfigError(A2KError, ValueError):
    """A pipeline, training or component configuration is invalid."""


class UnknownComponentError(ConfigError, KeyError):
    """No component of that kind is registered under that name."""

    def __init__(self, kind: str, name: str, available: list[str], suggestion: str | None = None):
        self.kind, self.name, self.available, self.suggestion = kind, name, sorted(available), suggestion
        msg = f"unknown {kind} {name!r}"
        if suggestion:
            msg += f" (did you mean {suggestion!r}?)"
        msg += "; available: " + (", ".join(self.available) or "none")
        msg += ". Run `a2k plugins list` to see every component and the plugin providing it."
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class PluginError(A2KError):
    """A plugin registered something invalid or could not be loaded."""


class DuplicateComponentError(PluginError):
    """Two plugins registered a component of the same kind under the same name."""


class NoFaceFoundError(A2KError):
    """The keypoint detector found no face in an image."""


class InputError(A2KError, ValueError):
    """An input file or array is missing, unreadable or of the wrong shape."""


class AudioLoadError(InputError):
    """An audio file is missing, empty, corrupt or in an unsupported format."""


class ImageLoadError(InputError):
    """An image file is missing, corrupt or in an unsupported format."""


class CheckpointError(A2KError):
    """A checkpoint is missing, corrupt, or does not match the model it is loaded into."""


class MissingDependencyError(A2KError, ImportError):
    """An optional stack is not installed; the message names the extra to install."""

    def __init__(self, package: str, extra: str, purpose: str):
        super().__init__(
            f"{purpose} needs the optional package {package!r}, which is not installed. "
            f"Install it with: pip install 'a2k-toolkit[{extra}]'"
        )


def require(module: str, extra: str, purpose: str):
    """Import an optional module, or raise :class:`MissingDependencyError` naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(module.split(".")[0], extra, purpose) from exc
