"""Keypoint detector ``chain``: several detectors tried in order; the first that finds a face wins.

``{name: chain, params: {members: [dlib, mediapipe]}}`` runs ``dlib`` and, only on an image where it finds no face,
``mediapipe``. The members are nested component specs (names or ``{name, params}``), checked with the config before
anything is built and built through the *host's* catalog (``Catalog.build`` passes it, see
``Component.uses_catalog``), so a chain can hold any installed plugin's detector.

A member that finds no face, or fails with an error of its own (missing weights, a missing package), hands the image
to the next one; an error about the input itself (:class:`~a2k_toolkit.errors.InputError`) stops the chain. Only when
every member fails does :meth:`ChainDetector.detect` raise :class:`~a2k_toolkit.errors.NoFaceFoundError`, naming each
member's reason. The keypoints it returns name the member that found them in ``meta["detector"]``.
"""

from __future__ import annotations

import warnings

import numpy as np
from pydantic import Field

from ..components import KeypointDetector, Params
from ..config import DetectorSpec, validate_nested
from ..errors import A2KError, ConfigError, InputError, NoFaceFoundError
from ..hookspecs import hookimpl


class ChainParams(Params):
    members: list[DetectorSpec] = Field(
        min_length=1,
        max_length=8,
        description="detectors tried in this order until one finds a face: names or {name, params}",
    )


class ChainDetector(KeypointDetector):
    """Detectors tried in order until one finds a face (e.g. dlib, then mediapipe)."""

    name = "chain"
    Params = ChainParams
    uses_catalog = True

    def __init__(self, params=None, *, catalog=None, **kwargs):
        """``catalog``: the host's :class:`~a2k_toolkit.catalog.Catalog`, which builds the members. Hosts pass it
        through ``Catalog.build``; without it the members cannot be built (the chain never makes a catalog itself)."""
        super().__init__(params, **kwargs)
        self._members: list[KeypointDetector] | None = None
        #: ``(member name, reason)`` per member that failed on the last image (empty when the first one found a face)
        self.last_failures: list[tuple[str, str]] = []
        if catalog is not None:
            validate_nested(self.params, catalog, "")  # every member checked before any is built (no-op if done)
            self._members = [
                catalog.build("detector", spec, where=f"chain members[{i}]")
                for i, spec in enumerate(self.params.members)
            ]

    @property
    def members(self) -> list[KeypointDetector]:
        if self._members is None:
            raise ConfigError(
                "the 'chain' detector was built without the host's catalog, so it cannot build its members; build it "
                "with catalog.build('detector', 'chain', params) (Pipeline.from_config does), or pass catalog= to "
                "ChainDetector"
            )
        return self._members

    def to(self, device):
        super().to(device)
        for m in self._members or []:
            m.to(device)
        return self

    # ------------------------------------------------------------------------------------------------ detection
    def _first(self, image: np.ndarray) -> tuple[str | None, list[np.ndarray]]:
        """``(name of the member that found faces, its faces)``, or ``(None, [])``; failures in ``last_failures``."""
        self.last_failures = []
        for member in self.members:
            try:
                faces = member.detect_all(image)
            except InputError:
                raise
            except A2KError as exc:
                self.last_failures.append((member.name, str(exc)))
                continue
            if faces:
                return member.name, faces
            self.last_failures.append((member.name, "found no face"))
        return None, []

    def detect_all(self, image: np.ndarray) -> list[np.ndarray]:
        return self._first(image)[1]

    def detect(self, image: np.ndarray):
        from ..keypoints import Keypoints

        winner, faces = self._first(image)
        if not faces:
            h, w = image.shape[:2]
            reasons = "; ".join(f"{name}: {reason}" for name, reason in self.last_failures)
            raise NoFaceFoundError(
                f"no face found in the image ({w}x{h} px) by any detector of the chain ({reasons}); use a photo in "
                "which one face is clearly visible, or add a detector that finds it to the chain's members"
            )
        if len(faces) > 1:
            warnings.warn(
                f"{len(faces)} faces found in the image by {winner!r}; using the largest one", UserWarning, stacklevel=2
            )
        return Keypoints(faces[0][None], image_size=image.shape[:2], meta={"detector": winner})

    def detect_batch(self, images: list[np.ndarray]) -> list[np.ndarray | None]:
        """The largest face per image (``None`` where no member finds one): each member runs its own (possibly
        GPU-batched) ``detect_batch`` on the images the members before it missed."""
        out: list[np.ndarray | None] = [None] * len(images)
        todo = list(range(len(images)))
        for member in self.members:
            if not todo:
                break
            try:
                found = member.detect_batch([images[i] for i in todo])
            except InputError:
                raise
            except A2KError:
                continue
            for i, pts in zip(todo, found):
                out[i] = pts
            todo = [i for i in todo if out[i] is None]
        return out


@hookimpl
def register_keypoint_detectors(register):
    register(ChainDetector)
