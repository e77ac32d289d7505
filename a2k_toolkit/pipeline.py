"""The pipeline: audio (or text) + one face image -> keypoints -> frames.

Hooks only discover component classes; the data path is the plain method calls below, usable stage by stage.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import formats, io
from .catalog import Catalog
from .components import AudioFrontend, KeypointDetector, KeypointGenerator, Renderer, SpeechSynthesizer
from .config import SLOTS, ComponentSpec, PipelineConfig, PoseConfig, load_config, validate_components, with_frontend
from .device import resolve_device
from .errors import InputError
from .keypoints import Keypoints
from .pose import PoseSource
from .rendering import RGBImage


@dataclass
class Result:
    """What a pipeline call produced: keypoints, and (lazily, streamed) frames when a renderer is set.

    ``image`` is the reference image, converted once (:class:`~a2k_toolkit.rendering.RGBImage`); ``waveform`` the
    speech at the front-end's ``sample_rate``; ``audio_file`` the user's own audio file when the speech came from one
    (the MP4 gets that file's audio, encoded once to AAC, rather than the resampled waveform)."""

    keypoints: Keypoints
    image: RGBImage
    waveform: np.ndarray
    sample_rate: int
    renderer: Renderer | None = None
    audio_file: Path | None = None

    def iter_frames(self) -> Iterator[np.ndarray]:
        if self.renderer is None:
            raise InputError("this pipeline has no renderer; set `renderer` in the config to produce frames")
        return self.renderer.frames(self.keypoints, self.image)

    @property
    def frames(self) -> np.ndarray:
        """All frames as one ``(T, H, W, 3)`` uint8 array (for long audio prefer :meth:`iter_frames`)."""
        return np.stack(list(self.iter_frames()))

    def save(
        self, keypoints: str | Path | None = None, video: str | Path | None = None, *, format: str | None = None
    ) -> None:
        """Write the keypoints in any format of :mod:`a2k_toolkit.formats` (by extension: .npy, .npz, .json, .csv,
        .pts, .mp4 pose video; a folder ``dir/``: OpenPose JSON per frame; or named by ``format``) and/or an H.264
        MP4 with the speech muxed in.

        Both are written to temporaries first and renamed only when both are complete, so an error or a kill
        leaves the previous pair as it was (never new keypoints beside an old video)."""
        kp_format = None if keypoints is None else formats.check_output(keypoints, format, what="keypoint output")
        if video is not None:
            io.check_output_path(video, io.VIDEO_EXTENSIONS, what="video")
        with formats.staged_write(keypoints, self.keypoints, kp_format), io.atomic_paths(video) as (video_tmp,):
            if video_tmp is not None:
                io.write_video(
                    video_tmp,
                    self.iter_frames(),
                    self.keypoints.fps,
                    audio=self.audio_file if self.audio_file is not None else self.waveform,
                    sample_rate=self.sample_rate,
                    num_frames=len(self.keypoints),
                    atomic=False,
                )


class Pipeline:
    """Composes an audio front-end, a keypoint detector, a generator and an optional renderer; ``pose`` (a
    :class:`~a2k_toolkit.pose.PoseSource`, or its config) takes the head pose from a reference video or keypoint file
    instead of the generator's (:meth:`transfer_pose`)."""

    def __init__(
        self,
        audio: AudioFrontend,
        detector: KeypointDetector,
        generator: KeypointGenerator,
        renderer: Renderer | None = None,
        speech: SpeechSynthesizer | None = None,
        *,
        pose: PoseSource | PoseConfig | dict | str | None = None,
        device: str = "auto",
        seed: int | None = 0,
    ):
        self.audio, self.detector, self.generator = audio, detector, generator
        self.renderer, self.speech = renderer, speech
        self.pose = pose if pose is None or isinstance(pose, PoseSource) else PoseSource(pose)
        self.seed = seed
        self._device_spec = device
        self.generator.check_frontend(self.audio)
        self.to(device)

    @classmethod
    def from_config(
        cls,
        config: PipelineConfig | dict[str, Any] | str | Path | None = None,
        *,
        plugins: Catalog | Any = None,
        **overrides: Any,
    ) -> Pipeline:
        """Build from a config (model, dict or YAML/JSON/TOML path). ``overrides`` replace top-level keys.

        ``plugins`` may be a :class:`Catalog` or a pluggy plugin manager; by default the built-ins plus every
        installed plugin. Every slot, and every component nested in one, is validated before any component is built;
        an unset ``audio`` slot is the front-end the generator declares (its checkpoint's). This catalog builds every
        component, nested ones included (the build context).
        """
        cfg = load_config(config)
        if overrides:  # the validated slots as they are, with the overrides checked
            cfg = load_config({**dict(cfg), **overrides})
        catalog = plugins if isinstance(plugins, Catalog) else Catalog(plugins)
        cfg = with_frontend(cfg, catalog)
        params = validate_components(cfg, catalog)
        formats.add_plugin_formats(catalog.pm)  # keypoint formats from plugins (pose sources, Result.save)
        pose = None if cfg.pose is None else PoseSource(cfg.pose)  # a missing or unreadable source fails here
        # the generator first: it reads its checkpoint, which the other slots never wait for
        order = sorted(params, key=lambda slot: slot != "generator")
        built = {slot: catalog.build(SLOTS[slot], getattr(cfg, slot).name, params[slot]) for slot in order}
        return cls(**built, pose=pose, device=cfg.device, seed=cfg.seed)

    @property
    def config(self) -> PipelineConfig:
        """The config that rebuilds this pipeline."""

        def spec(c):
            return None if c is None else ComponentSpec(name=c.name, params=c.params.model_dump(mode="json"))

        return PipelineConfig(
            audio=spec(self.audio),
            detector=spec(self.detector),
            generator=spec(self.generator),
            renderer=spec(self.renderer),
            speech=spec(self.speech) or PipelineConfig().speech,
            pose=None if self.pose is None else self.pose.config,
            device=self._device_spec,
            seed=self.seed,
        )

    @property
    def components(self) -> dict[str, Any]:
        return {slot: getattr(self, slot) for slot in SLOTS}

    def to(self, device: str) -> Pipeline:
        self.device = resolve_device(device)
        for comp in self.components.values():
            if comp is not None:
                comp.to(self.device)
        return self

    # ---------------------------------------------------------------------------------------------------- stages
    def load_audio(self, audio: Any, sample_rate: int | None = None) -> np.ndarray:
        """Mono float32 at the front-end's sample rate: a path, an array (with ``sample_rate``) or ``(array, sr)``."""
        if isinstance(audio, tuple):
            audio, sample_rate = audio
        return io.load_audio(audio, self.audio.sample_rate, orig_sample_rate=sample_rate)

    def synthesize(self, text: str, lang: str | None = None) -> np.ndarray:
        if self.speech is None:
            raise InputError("this pipeline has no speech synthesizer; set `speech` in the config to use text input")
        wav, sr = self.speech.synthesize(text, lang)
        return io.load_audio(wav, self.audio.sample_rate, orig_sample_rate=sr)

    def features(self, waveform: np.ndarray) -> np.ndarray:
        return self.audio(waveform, self.audio.sample_rate)

    def load_image(self, image: Any) -> RGBImage:
        """The reference image (a path or an array) converted once to RGB uint8, the type renderers take as it is."""
        return RGBImage.load(image)

    def detect(self, image: Any) -> Keypoints:
        return self.detector.detect(self.load_image(image))

    def generate(self, features: np.ndarray, reference: Keypoints) -> Keypoints:
        """The generator's keypoints at the front-end's frame rate; with a pose source, in its head pose
        (:meth:`transfer_pose`)."""
        kp = self.generator.generate(features, reference, seed=self.seed)
        kp.fps = self.audio.fps
        return self.transfer_pose(kp, reference)

    def transfer_pose(self, keypoints: Keypoints, reference: Keypoints) -> Keypoints:
        """The pose stage: ``keypoints`` with their head pose replaced by the pose source's, re-targeted to the
        ``reference`` face (:func:`a2k_toolkit.pose.transfer_pose`; a video source's faces found by this pipeline's
        detector); unchanged without a pose source. Works on any generator's output."""
        if self.pose is None:
            return keypoints
        return self.pose.apply(keypoints, reference, self.detector)

    def render(self, keypoints: Keypoints, image: Any) -> Iterator[np.ndarray]:
        if self.renderer is None:
            raise InputError("this pipeline has no renderer; set `renderer` in the config to produce frames")
        return self.renderer.frames(keypoints, self.load_image(image))

    def stream(self, image: Any = None, *, reference: Keypoints | None = None, **session: Any):
        """A :class:`~a2k_toolkit.streaming.StreamSession` for one speaker: reference keypoints detected in
        ``image`` (or given as ``reference``); ``lookahead_ms``, ``sample_rate`` and the generator's options as for
        the session (docs/streaming.md). With a pose source, each frame leaves in the source's head pose, as
        :meth:`generate` poses it (a video source's faces are all found when the first stream opens)."""
        from .streaming import StreamSession

        if reference is None and image is None:
            raise InputError("give the speaker's face: `image` (a file or an array) or `reference` keypoints")
        ref = reference if reference is not None else self.detect(image)
        pose = None
        if self.pose is not None and isinstance(ref, Keypoints) and len(ref):  # else the session says what is wrong
            pose = self.pose.transfer(ref, self.audio.fps, self.detector)
        return StreamSession(self.audio, self.generator, ref, seed=self.seed, pose=pose, **session)

    def __call__(
        self,
        image: Any,
        audio: Any = None,
        *,
        text: str | None = None,
        lang: str | None = None,
        sample_rate: int | None = None,
        reference: Keypoints | None = None,
    ) -> Result:
        """Keypoints (and lazily frames) for one face image and speech given as ``audio`` or ``text``."""
        if (audio is None) == (text is None):
            raise InputError("give exactly one of `audio` (a file or waveform) and `text`")
        img = self.load_image(image)
        waveform = self.load_audio(audio, sample_rate) if text is None else self.synthesize(text, lang)
        ref = reference if reference is not None else self.detector.detect(img)
        kps = self.generate(self.features(waveform), ref)
        audio_file = Path(audio).expanduser() if isinstance(audio, (str, os.PathLike)) else None
        return Result(kps, img, waveform, self.audio.sample_rate, self.renderer, audio_file=audio_file)
