"""Audio front-end ``stack``: the features of several front-ends side by side, one row per video frame.

``{name: stack, params: {members: [logmel, {name: vad, params: {...}}]}}`` gives, for every video frame, the
members' feature rows concatenated in the order listed. The members are built through the *host's* catalog (the one
the pipeline or trainer was given; :meth:`Catalog.build` passes it, see ``Component.uses_catalog``), so a stack can
hold any installed plugin's front-end and never builds a plugin manager of its own.

Layout (``feature_shape``):

- ``auto`` (default): when every member has the same number ``S > 1`` of sub-frames (e.g. two log-mel front-ends
  of ``(4, 80)`` and ``(4, 40)``), ``(S, F_1 + F_2 + ...)``: each sub-frame row holds the members' values of that
  sub-frame, so a 2D encoder still sees a spectrogram-like map. Otherwise a flat vector ``(D_1 + D_2 + ...,)``,
  which the Audio2Keypoint audio encoder views as ``(1, D)``.
- ``flat``: always ``(D_1 + D_2 + ...,)``, members' rows concatenated as they are.
- ``repeat``: members with one sub-frame (vectors such as ``vad``) are repeated over the ``S`` sub-frames of the
  others (which must all have ``S``): ``logmel`` + ``vad`` gives ``(4, 80 + 2)``.

Every member runs at the stack's ``fps`` (a member's own ``fps`` must be left out or equal it) and gets the
waveform at its own ``sample_rate`` (resampled when it differs from the stack's, which is the first member's).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from ..components import AudioFrontend, AudioFrontendParams
from ..config import AudioSpec, validate_nested, validate_spec
from ..errors import ConfigError, InputError
from ..hookspecs import hookimpl

#: one member front-end: a registered name and its params (a nested component, checked with the config)
MemberSpec = AudioSpec


class StackParams(AudioFrontendParams):
    members: list[AudioSpec] = Field(
        min_length=1,
        max_length=8,
        description="front-ends whose features are concatenated, in this order: names or {name, params}",
    )
    layout: Literal["auto", "flat", "repeat"] = Field(
        "auto",
        description="feature_shape: 'auto' = (S, sum F) when all members share S > 1 sub-frames, else flat "
        "(sum D,); 'flat' = always (sum D,); 'repeat' = one-sub-frame members repeated over the others' S sub-frames",
    )


def _sub_frames(shape: tuple[int, ...]) -> tuple[int, int]:
    """``(S, F)`` of a member's feature_shape (a vector ``(D,)`` is one sub-frame of ``D``)."""
    shape = tuple(int(v) for v in shape)
    if len(shape) == 1:
        return 1, shape[0]
    if len(shape) == 2:
        return shape
    return 1, int(np.prod(shape))


class StackFrontend(AudioFrontend):
    """Several front-ends' features concatenated per video frame (e.g. log-mel + voice activity)."""

    name = "stack"
    Params = StackParams
    uses_catalog = True

    def __init__(self, params=None, *, catalog=None, **kwargs):
        """``catalog``: the host's :class:`~a2k_toolkit.catalog.Catalog`, which builds the members. Hosts pass it
        through ``Catalog.build``; without it the members cannot be built (the stack never makes a catalog itself)."""
        super().__init__(params, **kwargs)
        self._catalog = catalog
        self._members: list[AudioFrontend] | None = None
        if catalog is not None:
            validate_nested(self.params, catalog, "")  # every member checked before any is built (no-op if done)
            self._members = self._build_members()
            self.sample_rate = self._members[0].sample_rate  # the rate hosts load audio at: the first member's

    # ------------------------------------------------------------------------------------------------ members
    def _build_members(self) -> list[AudioFrontend]:
        members = []
        for i, spec in enumerate(self.params.members):
            where = f"stack members[{i}] ({spec.name!r})"
            if "fps" in spec.params and abs(float(spec.params["fps"]) - self.fps) > 1e-9:
                raise ConfigError(
                    f"{where} sets fps {spec.params['fps']} but the stack runs at {self.fps:g}; remove "
                    "the member's fps (the stack's fps applies to every member)"
                )
            params = validate_spec(spec, self._catalog, f"members[{i}]", kind="audio")
            if "fps" in type(params).model_fields:
                params = params.model_copy(update={"fps": self.fps})  # the stack's fps, validated by its own params
            members.append(self._catalog.build("audio", spec.name, params))
        self._check_layout(members)
        return members

    @property
    def members(self) -> list[AudioFrontend]:
        if self._members is None:
            raise ConfigError(
                "the 'stack' audio front-end was built without the host's catalog, so it cannot build its members; "
                "build it with catalog.build('audio', 'stack', params) (Pipeline.from_config and Trainer do), or pass "
                "catalog= to StackFrontend"
            )
        return self._members

    def _check_layout(self, members: list[AudioFrontend]) -> None:
        if self.params.layout != "repeat":
            return
        subs = {_sub_frames(m.feature_shape)[0] for m in members} - {1}
        if len(subs) > 1:
            found = ", ".join(f"{m.name} {tuple(m.feature_shape)}" for m in members)
            raise ConfigError(
                f"stack layout 'repeat' needs the members with sub-frames to share one count, got "
                f"{found}; use layout 'flat'"
            )

    def _plan(self) -> tuple[int, list[tuple[int, int]]]:
        """``(S of the output, [(S_i, F_i) per member])``; ``S = 0`` means a flat vector."""
        shapes = [_sub_frames(m.feature_shape) for m in self.members]
        subs = {s for s, _ in shapes}
        layout = self.params.layout
        if layout == "repeat":
            return max(subs), shapes
        if layout == "auto" and len(subs) == 1 and next(iter(subs)) > 1:
            return next(iter(subs)), shapes
        return 0, shapes

    @property
    def feature_shape(self) -> tuple[int, ...]:
        S, shapes = self._plan()
        if S == 0:
            return (sum(s * f for s, f in shapes),)
        return (S, sum(f for _, f in shapes))

    def to(self, device):
        super().to(device)
        for m in self._members or []:
            m.to(device)
        return self

    # -------------------------------------------------------------------------------------------------- features
    def __call__(self, waveform: np.ndarray, sample_rate: int) -> np.ndarray:
        """Features ``(T, sum D)`` float32 for a mono waveform; each member sees it at its own sample rate."""
        from ..audio import resample

        wav = np.asarray(waveform, dtype=np.float32)
        if wav.ndim != 1:
            raise InputError(f"the stack front-end takes one mono waveform (N,), got an array of shape {wav.shape}")
        if sample_rate <= 0:
            raise InputError(f"sample rate must be positive, got {sample_rate}")
        T = self.num_frames(len(wav), sample_rate)
        S, shapes = self._plan()
        parts = []
        for member, (s, f) in zip(self.members, shapes):
            feats = np.asarray(member(resample(wav, sample_rate, member.sample_rate), member.sample_rate), np.float32)
            if feats.ndim != 2 or feats.shape[1] != s * f or abs(len(feats) - T) > 1:
                raise InputError(
                    f"stack member {member.name!r} returned features of shape {feats.shape}, expected "
                    f"({T}, {s * f}); the member breaks the (T, D) front-end contract"
                )
            if len(feats) != T:  # one frame off after resampling rounded the length: repeat or drop the last frame
                feats = feats[:T] if len(feats) > T else np.concatenate([feats, feats[-1:]])
            if S == 0:
                parts.append(feats)
            else:
                feats = feats.reshape(T, s, f)
                parts.append(np.repeat(feats, S // s, axis=1) if s != S else feats)
        out = np.concatenate(parts, axis=-1)
        return np.ascontiguousarray(out.reshape(T, -1), dtype=np.float32)

    def stream(self):
        """A :class:`~a2k_toolkit.streaming.contract.FeatureStream` of the stacked features: each member's stream (a
        member that does not stream is an error naming it), fed at the member's sample rate; equal to offline."""
        from ..streaming.contract import feature_stream
        from .streams import StackFeatureStream

        return StackFeatureStream(self, feature_stream)


@hookimpl
def register_audio_frontends(register):
    register(StackFrontend)
