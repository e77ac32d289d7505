"""Component base classes: one per kind of plugin.

A component is a class with a ``name`` and a nested pydantic ``Params`` model. Plugins register classes, never
instances, so discovery loads no weights. ``Component(params)`` validates its parameters on construction;
``Component.Params.model_validate(...)`` validates them without building anything.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .keypoints import Keypoints


class Params(BaseModel):
    """Base of every component's parameters: unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


#: ``json_schema_extra`` of a parameter that names a file or directory which must exist (``a2k config validate``
#: checks it); use :func:`path_field` to declare one
PATH_MARK = "a2k_path"


def path_field(*args: Any, **kwargs: Any) -> Any:
    """A ``Field`` (same arguments) for a parameter holding an existing file or directory path (a string, or a list
    of them)."""
    return Field(*args, json_schema_extra={PATH_MARK: True}, **kwargs)


def param_paths(params: BaseModel) -> list[tuple[str, str]]:
    """``(key, path)`` for every path that ``params`` names in its :func:`path_field` parameters (``key`` is
    ``name`` or ``name[i]`` for a list); unset (``None`` or empty) parameters name none."""
    found: list[tuple[str, str]] = []
    for key, info in type(params).model_fields.items():
        extra = info.json_schema_extra
        if not (isinstance(extra, dict) and extra.get(PATH_MARK)):
            continue
        value = getattr(params, key)
        if isinstance(value, (list, tuple)):
            found += [(f"{key}[{i}]", str(v)) for i, v in enumerate(value) if v not in (None, "")]
        elif value not in (None, ""):
            found.append((key, str(value)))
    return found


class Component:
    """Base of all components. Subclasses set ``name`` and may override ``Params``."""

    kind: ClassVar[str] = ""
    name: ClassVar[str] = ""
    Params: ClassVar[type[BaseModel]] = Params
    #: True for components that contain components (e.g. the ``stack`` front-end, whose ``Params`` hold typed
    #: :class:`~a2k_toolkit.config.ComponentSpec` params): their constructor takes a keyword ``catalog``, the build
    #: context, and hosts build them with :meth:`~a2k_toolkit.catalog.Catalog.build`, which passes itself
    uses_catalog: ClassVar[bool] = False

    def __init__(self, params: BaseModel | dict[str, Any] | None = None, **kwargs: Any):
        if type(params) is self.Params and not kwargs:
            self.params = params  # validated already (by the config, or the host): not again
        else:
            merged = params.model_dump() if isinstance(params, BaseModel) else dict(params or {})
            merged.update(kwargs)
            self.params = self.Params.model_validate(merged)
        self.device = "cpu"

    def to(self, device: str | torch.device) -> Component:
        """Move the component's tensors to ``device``; returns ``self``."""
        self.device = str(device)
        return self

    @classmethod
    def summary(cls) -> str:
        """First line of the class docstring."""
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, params={self.params.model_dump()!r})"


def num_frames(duration_s: float, fps: float) -> int:
    """Number of video frames covering ``duration_s`` seconds: ``ceil(duration * fps)``, at least 1."""
    # round first so that 2.0 s * 25 fps computed as 50.0000000001 does not become 51 frames
    return max(1, math.ceil(round(duration_s * fps, 6)))


class AudioFrontendParams(Params):
    fps: float = Field(25.0, gt=0, description="video frame rate the features are aligned to")


class AudioFrontend(Component):
    """Waveform + sample rate -> features ``(T, D)`` aligned to the video frame rate, ``T = ceil(duration * fps)``.

    ``feature_shape`` says how the ``D`` values of one frame are laid out (for example ``(4, 80)``: four 10 ms
    log-mel sub-frames of 80 bands), so that an encoder can view the features as a 2D spectrogram.
    """

    kind = "audio"
    Params = AudioFrontendParams
    sample_rate: ClassVar[int] = 16000
    #: True when the features are log power (dB, e.g. a log-mel spectrogram): a gain is then a shift of every value
    #: and loudness can be read off them. Training's ``augment.gain_db`` and the generator's ``silence_gate_db`` need
    #: such a front-end; a third-party one takes part by setting this on its class.
    log_power: ClassVar[bool] = False

    @property
    def fps(self) -> float:
        return float(self.params.fps)

    @property
    def feature_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    @property
    def feature_dim(self) -> int:
        return int(np.prod(self.feature_shape))

    def num_frames(self, num_samples: int, sample_rate: int | None = None) -> int:
        return num_frames(num_samples / (sample_rate or self.sample_rate), self.fps)

    def __call__(self, waveform: np.ndarray, sample_rate: int) -> np.ndarray:
        """Features ``(T, D)`` float32 for a mono waveform."""
        raise NotImplementedError


class SpeechSynthesizer(Component):
    """Text -> mono float32 waveform (text-to-speech audio source)."""

    kind = "speech"

    def synthesize(self, text: str, lang: str | None = None) -> tuple[np.ndarray, int]:
        """Return ``(waveform, sample_rate)``."""
        raise NotImplementedError


class KeypointDetector(Component):
    """RGB uint8 image ``(H, W, 3)`` -> :class:`Keypoints` ``(1, 68, 2)`` in pixel coordinates.

    Subclasses implement :meth:`detect_all` (every face, largest first). :meth:`detect` returns the largest face,
    warns when there are several, and raises :class:`~a2k_toolkit.errors.NoFaceFoundError` when there is none.
    """

    kind = "detector"

    def detect_all(self, image: np.ndarray) -> list[np.ndarray]:
        """68 keypoints ``(68, 2)`` for every face in ``image``, largest face first; ``[]`` when there is none."""
        raise NotImplementedError

    def detect(self, image: np.ndarray) -> Keypoints:
        import warnings

        from .errors import NoFaceFoundError
        from .keypoints import Keypoints

        faces = self.detect_all(image)
        if not faces:
            h, w = image.shape[:2]
            raise NoFaceFoundError(
                f"no face found in the image ({w}x{h} px) by detector {self.name!r}; use a photo in which one face is "
                "clearly visible, roughly frontal and at least about 80 px wide"
            )
        if len(faces) > 1:
            warnings.warn(f"{len(faces)} faces found in the image; using the largest one", UserWarning, stacklevel=2)
        return Keypoints(faces[0][None], image_size=image.shape[:2])

    def detect_batch(self, images: list[np.ndarray]) -> list[np.ndarray | None]:
        """Keypoints ``(68, 2)`` of the largest face per image, ``None`` where there is none. Override to batch on
        a GPU."""
        out: list[np.ndarray | None] = []
        for img in images:
            faces = self.detect_all(img)
            out.append(faces[0] if faces else None)
        return out


class KeypointEncoder(Component):
    """Keypoints -> latent code: a factory for a ``torch.nn.Module`` mapping ``(B, T, 136)`` to ``(B, T, out_dim)``.

    The paper's pose-variant (PV) and pose-invariant (PIV) encoders are keypoint encoders; generators build them
    by name from their own params.
    """

    kind = "encoder"

    @property
    def out_dim(self) -> int:
        raise NotImplementedError

    def build(self, in_dim: int = 136) -> torch.nn.Module:
        raise NotImplementedError


class KeypointGenerator(Component):
    """Per-frame audio features + reference keypoints -> keypoint sequence (the Audio2Keypoint stage).

    ``generate(features, reference)`` returns :class:`Keypoints` with ``T = len(features)`` frames in the reference's
    pixel coordinates, frame 0 equal to the reference.
    """

    kind = "generator"

    @classmethod
    def frontend_spec(cls, params: BaseModel, catalog: Any) -> dict[str, Any] | str | None:
        """The audio front-end this generator needs with validated ``params``, as ``{name, params}`` (or a name),
        worked out without building anything or loading weights (``catalog``: the host's, for a generator that asks
        a nested one); a pipeline whose config leaves ``audio`` unset runs it. None (the default): no preference (the
        pipeline runs ``logmel``)."""
        return None

    def check_frontend(self, frontend: AudioFrontend) -> None:
        """Raise :class:`~a2k_toolkit.errors.ConfigError` if this generator cannot consume ``frontend``'s features."""

    def generate(self, features: np.ndarray, reference: Keypoints, *, seed: int | None = None) -> Keypoints:
        raise NotImplementedError

    def generate_batch(
        self, requests: list[tuple[np.ndarray, Keypoints]], *, seed: int | None = None
    ) -> list[Keypoints]:
        """Generate for many ``(features, reference)`` pairs. Override to batch."""
        return [self.generate(f, r, seed=seed) for f, r in requests]


class Renderer(Component):
    """Keypoints + RGB reference image -> frames ``(T, H, W, 3)`` uint8.

    Implement :meth:`frames`, which yields one frame at a time so that long sequences stream to the encoder;
    :meth:`render` stacks them.
    """

    kind = "renderer"

    def frames(self, keypoints: Keypoints, reference_image: np.ndarray) -> Iterator[np.ndarray]:
        raise NotImplementedError

    def render(self, keypoints: Keypoints, reference_image: np.ndarray) -> np.ndarray:
        frames = list(self.frames(keypoints, reference_image))
        if not frames:
            return np.zeros((0, *reference_image.shape[:2], 3), np.uint8)
        return np.stack(frames)


KIND_BASES: dict[str, type[Component]] = {
    "audio": AudioFrontend,
    "speech": SpeechSynthesizer,
    "detector": KeypointDetector,
    "encoder": KeypointEncoder,
    "generator": KeypointGenerator,
    "renderer": Renderer,
}

KIND_HOOKS: dict[str, str] = {
    "audio": "register_audio_frontends",
    "speech": "register_speech_synthesizers",
    "detector": "register_keypoint_detectors",
    "encoder": "register_keypoint_encoders",
    "generator": "register_generators",
    "renderer": "register_renderers",
}
