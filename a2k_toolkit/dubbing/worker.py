"""Running dubbing jobs: one :class:`DubWorker` per process builds its pipeline once and runs jobs one by one.

The worker keeps the pipelines it has built (the base one, and a few per-row config variants) and caches face
detection per identity source, keyed by the file's content hash, the chosen frame and the detector config: in
memory, and on disk under ``<out>/.a2k-dub/faces/`` so other workers and later runs reuse it.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import io
from ..errors import A2KError, InputError, NoFaceFoundError
from ..hashing import sha256_file, sha256_text
from ..keypoints import Keypoints

MAX_SCAN_FRAMES = 250  # frames searched for a face when a video row gives no `frame` (10 s at 25 fps)
MAX_PIPELINES = 4  # pipelines kept per worker (the base one plus per-row config variants)


@dataclass
class Job:
    """One checked manifest row, ready to run (picklable: it travels to worker processes and Ray actors)."""

    id: str
    line: int
    source: str  # absolute path of the image or video
    source_kind: str  # "image" | "video"
    source_sha256: str
    frame: int | None
    audio: str | None
    audio_sha256: str | None
    text: str | None
    lang: str | None
    config: dict[str, Any]  # the row's full pipeline config (base + overrides), validated
    out_dir: str
    output: str  # relative to out_dir
    keypoints: str  # relative to out_dir
    fingerprint: str
    attempt: int = 1

    @property
    def video_path(self) -> Path | None:
        return Path(self.out_dir, self.output) if self.output.lower().endswith(".mp4") else None

    @property
    def keypoints_path(self) -> Path:
        return Path(self.out_dir, self.keypoints)


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


class DubWorker:
    """Builds pipelines on demand (kept, so models load once per worker) and runs :class:`Job` s."""

    def __init__(
        self,
        base_config: dict[str, Any],
        *,
        device: str | None = None,
        plugins: Any = None,
        pipeline: Any = None,
        cache_dir: str | os.PathLike | None = None,
    ):
        from ..catalog import Catalog

        self.device = device
        self.catalog = plugins if isinstance(plugins, Catalog) else Catalog(plugins)
        self._pipelines: OrderedDict[str, Any] = OrderedDict()
        self._faces: OrderedDict[str, tuple[np.ndarray, Keypoints | str]] = OrderedDict()
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.base_key = sha256_text(canonical(base_config))
        self.init_error: str | None = None
        if pipeline is not None:
            self._pipelines[self.base_key] = pipeline
        else:
            try:
                self.warm_up(self.pipeline_for(base_config))
            except Exception as exc:  # noqa: BLE001 - reported on every job this worker gets
                self.init_error = _describe(exc)

    @staticmethod
    def warm_up(pipe) -> None:
        """Load lazily-loaded models and compile kernels now (detector on a blank image, features of 0.2 s of
        silence), so the first job's timings are like the others'."""
        for step in (
            lambda: pipe.detector.detect_all(np.zeros((64, 64, 3), np.uint8)),
            lambda: pipe.features(np.zeros(pipe.audio.sample_rate // 5, np.float32)),
        ):
            try:
                step()
            except Exception:  # noqa: BLE001 - a component that rejects the dummy input simply is not warmed up
                pass

    # ------------------------------------------------------------------------------------------------ pipelines
    def pipeline_for(self, config: dict[str, Any]):
        from ..pipeline import Pipeline

        key = sha256_text(canonical(config))
        pipe = self._pipelines.get(key)
        if pipe is None:
            overrides = {"device": self.device} if self.device else {}
            pipe = Pipeline.from_config(config, plugins=self.catalog, **overrides)
            self._pipelines[key] = pipe
            while len(self._pipelines) > MAX_PIPELINES:
                oldest = next(k for k in self._pipelines if k != self.base_key)
                del self._pipelines[oldest]
        self._pipelines.move_to_end(key)
        return pipe

    # ---------------------------------------------------------------------------------------------- face cache
    def reference(self, job: Job, pipe) -> tuple[np.ndarray, Keypoints, str]:
        """The reference image and its keypoints for ``job``'s identity source, and ``"hit"`` / ``"miss"``."""
        detector = pipe.config.detector.model_dump(mode="json")
        key = sha256_text(canonical([job.source_sha256, job.source_kind, job.frame, detector]))
        cached = self._faces.get(key)
        state = "hit"
        if cached is None:
            cached = self._load_face(key)
        if cached is None:
            state = "miss"
            cached = self._detect(job, pipe)
            self._store_face(key, *cached)
        self._faces[key] = cached
        self._faces.move_to_end(key)
        while len(self._faces) > 16:
            self._faces.popitem(last=False)
        image, found = cached
        if isinstance(found, str):
            raise NoFaceFoundError(found)
        return image, found, state

    def _detect(self, job: Job, pipe) -> tuple[np.ndarray, Keypoints | str]:
        if job.source_kind == "image":
            image = io.load_image(job.source)
            try:
                return image, pipe.detector.detect(image)
            except NoFaceFoundError as exc:
                return image, f"{exc} (image {Path(job.source).name})"
        last = None
        for index, frame in enumerate(io.read_video_frames(job.source)):
            last = index
            if job.frame is not None and index < job.frame:
                continue
            frame = np.ascontiguousarray(frame)
            try:
                kp = pipe.detector.detect(frame)
                kp.meta["frame"] = index
                return frame, kp
            except NoFaceFoundError as exc:
                if job.frame is not None:
                    return frame, (
                        f"no face found in frame {job.frame} of video {Path(job.source).name} ({exc}); "
                        "choose another `frame`, or leave it empty to use the first frame with a face"
                    )
            if index + 1 >= MAX_SCAN_FRAMES:
                return frame, (
                    f"no face found in the first {MAX_SCAN_FRAMES} frames of video "
                    f"{Path(job.source).name}; set the `frame` column to a frame that shows the face"
                )
        if last is None:
            raise InputError(f"cannot read any frame from video {job.source}; is it a valid video file?")
        if job.frame is not None:
            raise InputError(
                f"`frame` {job.frame} is out of range: video {Path(job.source).name} has {last + 1} frames (0..{last})"
            )
        return frame, f"no face found in any of the {last + 1} frames of video {Path(job.source).name}"

    def _face_file(self, key: str) -> Path | None:
        return self.cache_dir / f"{key}.npz" if self.cache_dir else None

    def _load_face(self, key: str) -> tuple[np.ndarray, Keypoints | str] | None:
        path = self._face_file(key)
        if path is None or not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                image = z["image"]
                meta = json.loads(str(z["meta"]))
                if "error" in meta:
                    return image, meta["error"]
                return image, Keypoints(z["points"], image_size=tuple(meta["image_size"]), meta=meta.get("meta", {}))
        except Exception:  # noqa: BLE001 - a damaged cache entry is recomputed
            return None

    def _store_face(self, key: str, image: np.ndarray, found: Keypoints | str) -> None:
        path = self._face_file(key)
        if path is None:
            return
        if isinstance(found, str):
            meta, points = {"error": found}, np.zeros((0, 68, 2), np.float32)
        else:
            meta, points = {"image_size": list(found.image_size or image.shape[:2]), "meta": found.meta}, found.points
        with io.atomic_path(path) as tmp:
            np.savez_compressed(tmp, image=image, points=points, meta=json.dumps(meta))

    # ------------------------------------------------------------------------------------------------------ jobs
    def run(self, job: Job) -> dict[str, Any]:
        """Run one job; never raises for a job's own problems: returns a result record with status and reason."""
        started = time.time()
        timings: dict[str, float] = {}
        record: dict[str, Any] = {
            "id": job.id,
            "line": job.line,
            "worker": os.getpid(),
            "attempt": job.attempt,
            "fingerprint": job.fingerprint,
            "output": job.output,
            "keypoints": job.keypoints,
        }
        written: list[Path] = []
        try:
            if self.init_error:
                raise A2KError(f"the worker could not build the pipeline: {self.init_error}")
            record.update(self._run(job, timings, written))
            record["status"] = "done"
        except Exception as exc:  # noqa: BLE001 - one bad row never stops the batch
            for path in written:  # a later step failed: leave no unverified file that looks finished
                path.unlink(missing_ok=True)
            record.update(status="failed", reason=_describe(exc), error_type=type(exc).__name__)
            if not isinstance(exc, A2KError):
                record["traceback"] = traceback.format_exc(limit=8)
        timings["total"] = time.time() - started
        record["timings"] = {k: round(v, 4) for k, v in timings.items()}
        record["started_at"], record["finished_at"] = started, time.time()
        return record

    def _run(self, job: Job, timings: dict[str, float], written: list[Path]) -> dict[str, Any]:
        def lap(name: str, t0: float) -> float:
            now = time.time()
            timings[name] = now - t0
            return now

        t = time.time()
        pipe = self.pipeline_for(job.config)
        t = lap("pipeline", t)
        image, ref, face_cache = self.reference(job, pipe)
        t = lap("detect", t)
        if job.text is not None:
            waveform = pipe.synthesize(job.text, job.lang)
        else:
            waveform = pipe.load_audio(job.audio)
        t = lap("speech", t)
        feats = pipe.features(waveform)
        kps = pipe.generate(feats, ref)
        T = len(kps)
        t = lap("generate", t)
        io.save_keypoints(job.keypoints_path, kps)
        written.append(job.keypoints_path)
        t = lap("save_keypoints", t)
        if job.video_path is not None:
            if pipe.renderer is None:
                raise InputError(
                    "`output` is an .mp4 but the row's pipeline has no renderer; set `renderer` in the "
                    "config, or give a keypoint file (.npz) as `output`"
                )
            io.write_video(
                job.video_path,
                pipe.renderer.frames(kps, image),
                kps.fps,
                # the row's own audio file, encoded once to AAC (as Result.save does); speech from text: its waveform
                audio=Path(job.audio) if job.audio is not None else waveform,
                sample_rate=pipe.audio.sample_rate,
                num_frames=T,
            )
            written.append(job.video_path)
            t = lap("render_encode", t)
        facts = verify_outputs(job.video_path, job.keypoints_path, T, kps.fps)
        lap("verify", t)
        return {
            **facts,
            "fps": kps.fps,
            "duration_s": round(T / kps.fps, 3),
            "face_cache": face_cache,
            "reference_frame": ref.meta.get("frame"),
            "reason": None,
        }


def verify_outputs(video: Path | None, keypoints: Path, frames: int, fps: float) -> dict[str, Any]:
    """Check the files a job wrote (the MP4 probes with ``frames`` frames, the keypoint file loads with as many);
    return their checksums. Raises :class:`A2KError` if they do not check out."""
    kp = io.load_keypoints(keypoints, fps=fps)
    if len(kp) != frames or kp.points.shape[1:] != (68, 2):
        raise A2KError(
            f"verification failed: keypoint file {keypoints.name} holds {kp.points.shape}, expected ({frames}, 68, 2)"
        )
    facts: dict[str, Any] = {"frames": frames, "keypoints_sha256": sha256_file(keypoints), "video_sha256": None}
    if video is not None:
        info = io.probe_video(video)
        if info["frames"] != frames or info["video_codec"] != "h264":
            raise A2KError(
                f"verification failed: {video.name} probes as {info['frames']} {info['video_codec']} "
                f"frames, expected {frames} h264 frames"
            )
        facts["video_sha256"] = sha256_file(video)
    return facts


def _describe(exc: BaseException) -> str:
    if isinstance(exc, A2KError):
        return str(exc)
    if isinstance(exc, OSError) and exc.filename:
        return f"cannot access {exc.filename}: {exc.strerror or exc}; check the path and its permissions"
    return f"internal error {type(exc).__name__}: {exc} (a bug; the report's traceback field has the details)"
