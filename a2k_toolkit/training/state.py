"""Resumable training state: optimisers, gradient scalers, RNG states and the data position, stored as a
``training_state.safetensors`` (every tensor) + ``training_state.json`` (everything else) pair -- no pickles."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError
from ..models.checkpoint import save_tensors, write_json

STATE_TENSORS = "training_state.safetensors"
STATE_JSON = "training_state.json"


def flatten_optimizer(sd: dict[str, Any], prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Move an optimiser ``state_dict``'s tensors into ``tensors`` (keys ``prefix.<param id>.<name>``); return the
    JSON-able rest."""
    state: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        entry: dict[str, Any] = {}
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{prefix}.{pid}.{k}"] = v
                entry[k] = {"__tensor__": f"{prefix}.{pid}.{k}"}
            else:
                entry[k] = v
        state[str(pid)] = entry
    return {"state": state, "param_groups": sd["param_groups"]}


def unflatten_optimizer(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    state = {}
    for pid, entry in meta["state"].items():
        state[int(pid)] = {
            k: tensors[v["__tensor__"]] if isinstance(v, dict) and "__tensor__" in v else v for k, v in entry.items()
        }
    return {"state": state, "param_groups": meta["param_groups"]}


def capture_rng() -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """This process's RNG states: JSON part (python, numpy) and tensor part (torch CPU, every CUDA device)."""
    py = random.getstate()
    npst = np.random.get_state()
    meta = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [npst[0], npst[1].tolist(), int(npst[2]), int(npst[3]), float(npst[4])],
    }
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda{i}"] = s
    return meta, tensors


def restore_rng(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    py = meta["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = meta["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(tensors["torch_cpu"].cpu())
    if torch.cuda.is_available():
        cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("cuda")), key=lambda k: int(k[4:]))]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([c.cpu() for c in cuda])


def save_training_state(directory: Path, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    save_tensors(Path(directory) / STATE_TENSORS, tensors, {"format": "a2k-training-state"})
    write_json(Path(directory) / STATE_JSON, meta)


def load_training_state(directory: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    jpath, tpath = directory / STATE_JSON, directory / STATE_TENSORS
    if not jpath.is_file() or not tpath.is_file():
        raise CheckpointError(
            f"{directory} has no training state ({STATE_JSON} / {STATE_TENSORS}), so it cannot be resumed (best/ "
            "holds weights only); resume from the run's latest/, or start a new run without --resume"
        )
    try:
        meta = json.loads(jpath.read_text("utf-8"))
        tensors = load_file(str(tpath))
    except (OSError, ValueError, SafetensorError) as exc:
        raise CheckpointError(
            f"the training state in {directory} is corrupt ({exc}); start a new run or restore "
            "the directory from a backup"
        ) from None
    return meta, tensors
