"""The ``wav2vec`` audio front-end: hidden states of a wav2vec 2.0 / HuBERT / WavLM / data2vec-audio encoder
(Hugging Face ``transformers``), pooled from the model's 50 Hz to the video frame rate.

* Model: a local directory (``save_pretrained`` output) or a hub id; ``revision`` pins a hub commit. Nothing is
  loaded until features are first needed (``feature_shape`` reads only ``config.json``). With ``local_files_only``
  or ``HF_HUB_OFFLINE=1`` nothing is downloaded, and a model missing from the local cache gives an error saying how
  to get it.
* Layer: ``layer = k`` is the output of transformer block ``k`` (``0``: the input of the first block, after the
  convolutional position embedding; negative values count from the last block, ``-1`` = last). Blocks after ``k``
  are dropped from the loaded model, so a middle layer also costs less. For "stable layer norm" models
  (large / lv60) the last block's output is taken before the encoder's final layer norm.
* Frame rate: model frame ``i`` is centred at ``(i * stride + receptive_field / 2) / 16000`` s (20 ms hop, 25 ms
  field for the usual conv stack). Video frame ``t`` gets the mean of the model frames centred inside
  ``[t / fps, (t + 1) / fps)`` (at 25 fps: exactly the pair ``2t, 2t + 1``); a video frame containing none (a frame
  rate above 50 fps, or the last frame of a clip) is linearly interpolated from its neighbours. ``T = ceil(d * fps)``.
* Long audio: the model runs on chunks of ``chunk_seconds`` with ``context_seconds`` of extra audio on each side,
  whose outputs are dropped; memory is bounded by the chunk, apart from the ``(T, D)`` result. (Attention is global,
  so chunked features are close to, not equal to, whole-utterance features; with enough context the difference is
  small.)
* Cache: with ``cache_dir``, features are stored as ``.npy`` (written atomically) under a key made of the model's
  identity (hub commit, or a fingerprint of the local directory's files), the layer, the frame rate, the chunking and
  a hash of the 16 kHz samples; a hit skips loading the model altogether.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from a2k_toolkit.audio import resample
from a2k_toolkit.components import AudioFrontend, AudioFrontendParams
from a2k_toolkit.errors import A2KError, ConfigError, InputError
from a2k_toolkit.hashing import sha256_bytes, sha256_text

SUPPORTED_MODEL_TYPES = ("wav2vec2", "hubert", "wavlm", "data2vec-audio")
SAMPLE_RATE = 16000


class ModelUnavailableError(A2KError):
    """The model could not be found locally or fetched from the hub."""


class Wav2VecParams(AudioFrontendParams):
    model: str = Field(
        "facebook/wav2vec2-base-960h",
        description="local directory of a saved model, or a Hugging Face hub id (wav2vec2, HuBERT, WavLM, data2vec)",
    )
    revision: str | None = Field(None, description="hub branch, tag or commit (hub ids only)")
    layer: int = Field(-1, description="transformer block whose output is used; 0 = input of the first, -1 = last")
    normalize: bool | None = Field(
        None, description="zero-mean unit-variance input; None = as the model's preprocessor_config.json says"
    )
    chunk_seconds: float = Field(30.0, ge=1.0, description="audio per model call (bounds memory on long audio)")
    context_seconds: float = Field(2.0, ge=0.0, description="extra audio each side of a chunk, output dropped")
    local_files_only: bool = Field(False, description="never download (also when HF_HUB_OFFLINE=1)")
    cache_dir: str | None = Field(None, description="directory for cached features; None = no caching")


def _offline_env() -> bool:
    return any(
        os.environ.get(v, "").strip().lower() in {"1", "true", "yes", "on"}
        for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _transformers():
    try:
        import transformers
    except ImportError as exc:  # pragma: no cover - a dependency of this package
        raise A2KError(
            "the wav2vec front-end needs the `transformers` package; install it with: pip install a2k-wav2vec"
        ) from exc
    return transformers


def _pickled_weights_error(src: str, weights: list[Path], exc: BaseException) -> ModelUnavailableError:
    files = ", ".join(str(w) for w in weights) or f"{src}'s pytorch_model.bin"
    detail = next((ln.strip() for ln in str(exc).splitlines() if "Unsupported global" in ln), "")
    detail = detail.split(" was not an allowed global")[0].replace("WeightsUnpickler error: ", "")
    return ModelUnavailableError(
        f"cannot load the wav2vec model weights {files}: the file is a pickle holding more than tensors, which torch "
        f"refuses to load because it could run code{f' ({detail})' if detail else ''}. Use the model's "
        "model.safetensors instead (download it, or convert on a machine where you trust the file: load it with "
        "torch.load(..., weights_only=False) and write the tensors with safetensors.torch.save_file to "
        "model.safetensors in the same folder, then remove the .bin)"
    )


class Wav2VecFrontend(AudioFrontend):
    """wav2vec 2.0 / HuBERT hidden states (transformers), one layer, pooled to the video frame rate."""

    name = "wav2vec"
    Params = Wav2VecParams
    sample_rate = SAMPLE_RATE

    def __init__(self, params=None, **kwargs: Any):
        super().__init__(params, **kwargs)
        self._config = None
        self._model = None
        self._normalize: bool | None = None

    # ------------------------------------------------------------------------------------------- model source
    def _source(self) -> tuple[str, bool]:
        """``(path or hub id, is a local directory)``; a missing path-like name is an error."""
        src = self.params.model
        path = Path(src).expanduser()
        if path.is_dir():
            return str(path), True
        if path.exists():
            raise ConfigError(f"wav2vec model {src!r} is a file; give the directory that save_pretrained wrote")
        if src.startswith((".", "/", "~")) or src.count("/") > 1 or "\\" in src:
            raise ConfigError(
                f"wav2vec model directory not found: {src}. Give a directory holding config.json and the weights "
                "(save_pretrained output), or a hub id such as facebook/wav2vec2-base-960h"
            )
        return src, False

    def _offline(self) -> bool:
        return self.params.local_files_only or _offline_env()

    def _from_pretrained(self, loader, what: str):
        src, local = self._source()
        offline = self._offline()
        kwargs = {"local_files_only": local or offline}
        if not local and self.params.revision:
            kwargs["revision"] = self.params.revision
        weights = sorted(Path(src).glob("*.bin")) if local else []
        if local and what == "model" and any(Path(src).glob("*.safetensors")):
            kwargs["use_safetensors"] = True  # never fall back to a pickled .bin beside the safetensors weights
        try:
            return loader.from_pretrained(src, **kwargs)
        except pickle.UnpicklingError as exc:  # torch's weights_only load refused a pickled checkpoint's objects
            raise _pickled_weights_error(src, weights, exc) from None
        except (OSError, ValueError) as exc:
            if local:
                raise ModelUnavailableError(
                    f"cannot load the wav2vec {what} from {src}: {exc}. The directory should hold config.json and "
                    "model.safetensors (as written by save_pretrained)"
                ) from None
            if offline:
                raise ModelUnavailableError(
                    f"wav2vec model {src!r} is not in the local Hugging Face cache, and downloads are off "
                    f"({'local_files_only' if self.params.local_files_only else 'HF_HUB_OFFLINE=1'}). On a machine "
                    f"with internet run `hf download {src}` and copy the cache (HF_HOME), or save the model with "
                    "save_pretrained(DIR) and set the front-end's `model` to that local directory"
                ) from None
            raise ModelUnavailableError(
                f"cannot get wav2vec model {src!r} from the Hugging Face hub: {exc}. Check the model id and the "
                "internet connection; without internet, give a local directory as `model`"
            ) from None

    @property
    def config(self):
        """The model's transformers config (reads only ``config.json``)."""
        if self._config is None:
            cfg = self._from_pretrained(_transformers().AutoConfig, "config")
            if cfg.model_type not in SUPPORTED_MODEL_TYPES:
                raise ConfigError(
                    f"wav2vec model {self.params.model!r} is a {cfg.model_type!r} model, not a speech encoder of a "
                    f"supported kind ({', '.join(SUPPORTED_MODEL_TYPES)})"
                )
            if getattr(cfg, "add_adapter", False):
                raise ConfigError(f"wav2vec model {self.params.model!r} has adapter layers, which are not supported")
            self._config = cfg
        return self._config

    @property
    def feature_shape(self) -> tuple[int]:
        return (int(self.config.hidden_size),)

    @property
    def layer_index(self) -> int:
        """``layer`` as a block count in ``0..num_hidden_layers``."""
        n = int(self.config.num_hidden_layers)
        k = self.params.layer
        if not -(n + 1) <= k <= n:
            raise ConfigError(
                f"layer {k} is out of range for {self.params.model!r}, which has {n} transformer blocks; use 0..{n} "
                f"or -{n + 1}..-1"
            )
        return k if k >= 0 else n + 1 + k

    # ------------------------------------------------------------------------------------------- conv geometry
    @property
    def stride(self) -> int:
        return int(np.prod(self.config.conv_stride))

    @property
    def receptive_field(self) -> int:
        rf, jump = 1, 1
        for k, s in zip(self.config.conv_kernel, self.config.conv_stride, strict=True):
            rf += (k - 1) * jump
            jump *= s
        return rf

    def num_model_frames(self, num_samples: int) -> int:
        n = int(num_samples)
        for k, s in zip(self.config.conv_kernel, self.config.conv_stride, strict=True):
            n = (n - k) // s + 1
        return max(n, 0)

    # ---------------------------------------------------------------------------------------------- loading
    def load(self) -> Wav2VecFrontend:
        """Load the model (once) onto the front-end's device, cut after the chosen block."""
        if self._model is not None:
            return self
        tf = _transformers()
        k = self.layer_index
        model = self._from_pretrained(tf.AutoModel, "model")
        del model.encoder.layers[max(k, 1) :]  # blocks after the chosen one never run
        model.eval().to(self.device)
        self._model = model
        if self.params.normalize is not None:
            self._normalize = self.params.normalize
        else:
            try:
                fx = self._from_pretrained(tf.AutoFeatureExtractor, "feature extractor")
                self._normalize = bool(getattr(fx, "do_normalize", True))
                sr = int(getattr(fx, "sampling_rate", SAMPLE_RATE))
            except ModelUnavailableError:  # no preprocessor_config.json: the common default
                self._normalize, sr = True, SAMPLE_RATE
            if sr != SAMPLE_RATE:
                raise ConfigError(
                    f"wav2vec model {self.params.model!r} expects {sr} Hz audio; only 16 kHz is supported"
                )
        return self

    def to(self, device):
        super().to(device)
        if self._model is not None:
            self._model.to(self.device)
        return self

    # -------------------------------------------------------------------------------------------- features
    def __call__(self, waveform: np.ndarray, sample_rate: int) -> np.ndarray:
        wav = np.asarray(waveform, dtype=np.float32)
        if wav.ndim != 1:
            raise InputError(f"expected a mono waveform (N,), got an array of shape {wav.shape}")
        wav = resample(wav, int(sample_rate), SAMPLE_RATE)
        T = self.num_frames(len(wav), SAMPLE_RATE)
        cache_file = self._cache_file(wav) if self.params.cache_dir else None
        if cache_file is not None:
            cached = self._read_cache(cache_file, T)
            if cached is not None:
                return cached
        feats = self._pool(wav, T)
        if cache_file is not None:
            self._write_cache(cache_file, feats)
        return feats

    def model_frames(self, waveform: np.ndarray) -> np.ndarray:
        """The chosen layer at the model's own rate, ``(M, D)`` for a 16 kHz waveform (whole, all chunks joined)."""
        wav = np.asarray(waveform, dtype=np.float32).reshape(-1)
        parts = [h for _, h in self._chunks(wav)]
        return np.concatenate(parts) if parts else np.zeros((0, self.feature_shape[0]), np.float32)

    def _pool(self, wav: np.ndarray, T: int) -> np.ndarray:
        fps, stride, half_rf = self.fps, self.stride, self.receptive_field / 2
        D = self.feature_shape[0]
        out = np.zeros((T, D), np.float32)
        count = np.zeros(T, np.int64)
        for f0, h in self._chunks(wav):
            centres = (np.arange(f0, f0 + len(h)) * stride + half_rf) / SAMPLE_RATE
            bins = np.minimum((centres * fps + 1e-9).astype(np.int64), T - 1)
            starts = np.flatnonzero(np.r_[True, bins[1:] != bins[:-1]])  # bins ascend: runs of equal bins
            out[bins[starts]] += np.add.reduceat(h, starts, axis=0)
            count[bins[starts]] += np.diff(np.r_[starts, len(bins)])
        filled = count > 0
        out[filled] /= count[filled, None]
        if not filled.all():  # no model frame inside: interpolate along time from the filled frames
            t, have = np.arange(T), np.flatnonzero(filled)
            for d in range(D):
                out[~filled, d] = np.interp(t[~filled], have, out[have, d])
        return out

    def _chunks(self, wav: np.ndarray):
        """``(first model frame, hidden states (n, D))`` per chunk, the chunks' core frames tiling ``0..M``."""
        import torch

        self.load()
        stride, rf = self.stride, self.receptive_field
        if len(wav) < rf:  # shorter than one model frame: pad with silence to one frame
            wav = np.pad(wav, (0, rf - len(wav)))
        N = len(wav)
        M = self.num_model_frames(N)
        mean, scale = self._norm_stats(wav)
        chunk = max(1, round(self.params.chunk_seconds * SAMPLE_RATE / stride))
        ctx = round(self.params.context_seconds * SAMPLE_RATE / stride)
        for f0 in range(0, M, chunk):
            f1 = min(M, f0 + chunk)
            left, right = min(ctx, f0), min(ctx, M - f1)
            s = (f0 - left) * stride
            e = N if f1 + right == M else (f1 + right - 1) * stride + rf  # the tail feeds the conv's GroupNorm
            seg = (wav[s:e] - mean) * scale if scale != 1.0 or mean != 0.0 else wav[s:e]
            x = torch.from_numpy(np.ascontiguousarray(seg, dtype=np.float32))[None].to(self.device)
            h = self._hidden(x)
            core = h[left : left + (f1 - f0)]
            if len(core) != f1 - f0:  # pragma: no cover - the conv geometry above is exact
                raise A2KError(f"wav2vec chunking produced {len(core)} frames where {f1 - f0} were expected")
            yield f0, core

    def _norm_stats(self, wav: np.ndarray) -> tuple[float, float]:
        """Whole-utterance mean and 1/std (as the transformers feature extractor normalizes), in blocks."""
        if not self._normalize:
            return 0.0, 1.0
        total = sq = 0.0
        for i in range(0, len(wav), 1 << 20):
            block = wav[i : i + (1 << 20)].astype(np.float64)
            total += float(block.sum())
            sq += float(np.dot(block, block))
        mean = total / len(wav)
        var = max(sq / len(wav) - mean * mean, 0.0)
        return mean, 1.0 / float(np.sqrt(var + 1e-7))

    def _hidden(self, x) -> np.ndarray:
        """Output of block ``layer`` for one chunk ``(1, n)``, captured by a hook on the (truncated) encoder."""
        import torch

        k = self.layer_index
        layers = self._model.encoder.layers
        captured = {}
        if k == 0:
            handle = layers[0].register_forward_pre_hook(lambda mod, args: captured.setdefault("h", args[0]))
        else:
            handle = layers[k - 1].register_forward_hook(
                lambda mod, args, out: captured.setdefault("h", out[0] if isinstance(out, tuple) else out)
            )
        try:
            with torch.inference_mode():
                self._model(x)
        finally:
            handle.remove()
        return captured["h"][0].float().cpu().numpy()

    # ------------------------------------------------------------------------------------------------ cache
    def model_fingerprint(self) -> str:
        """Identity of the model weights: hub id + cached commit, or a hash of the local directory's files."""
        src, local = self._source()
        if local:  # each weights or config file's name, size and time, and the configs' text
            parts = []
            for f in sorted(Path(src).iterdir()):
                if f.is_file() and (f.suffix in {".json", ".safetensors", ".bin"}):
                    st = f.stat()
                    parts.append(f"{f.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
                    if f.suffix == ".json":
                        parts.append(f.read_bytes())
            return f"{Path(src).resolve()}#{sha256_bytes(b''.join(parts))[:16]}"
        from huggingface_hub import try_to_load_from_cache

        cfg_path = try_to_load_from_cache(src, "config.json", revision=self.params.revision)
        if not isinstance(cfg_path, str):  # not cached yet: fetch (or fail with the offline message)
            _ = self.config
            cfg_path = try_to_load_from_cache(src, "config.json", revision=self.params.revision)
        commit = Path(cfg_path).parent.name if isinstance(cfg_path, str) else (self.params.revision or "unknown")
        return f"{src}@{commit}"

    def _cache_file(self, wav: np.ndarray) -> Path:
        p = self.params
        key = {
            "model": self.model_fingerprint(),
            "layer": p.layer,
            "normalize": p.normalize,
            "fps": p.fps,
            "chunk": p.chunk_seconds,
            "context": p.context_seconds,
            "format": 1,
            "audio": sha256_bytes(np.ascontiguousarray(wav).view(np.uint8)),
        }
        digest = sha256_text(json.dumps(key, sort_keys=True))[:40]
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(p.model).name or p.model)[:60]
        return Path(p.cache_dir).expanduser() / f"{slug}-layer{p.layer}-{digest}.npy"

    def _read_cache(self, path: Path, T: int) -> np.ndarray | None:
        if not path.is_file():
            return None
        try:
            arr = np.load(path, allow_pickle=False)
            if arr.dtype == np.float32 and arr.ndim == 2 and len(arr) == T:
                return arr
            problem = f"holds an array of shape {arr.shape} {arr.dtype}, expected ({T}, D) float32"
        except (OSError, ValueError) as exc:
            problem = f"cannot be read ({exc})"
        warnings.warn(f"wav2vec feature cache file {path} {problem}; recomputing it", RuntimeWarning, stacklevel=3)
        return None

    def _write_cache(self, path: Path, feats: np.ndarray) -> None:
        from a2k_toolkit.io import atomic_path

        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, feats, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
