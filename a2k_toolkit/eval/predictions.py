"""Each scored clip's predicted keypoints, saved beside a report (``a2k eval --save-predictions``) for analyses the
report does not make (other metrics, inference steps tried on saved predictions, per-clip plots).

One ``.npz`` per clip in ``REPORT_DIR/predictions/``: ``real`` (T, 68, 2, the clip's ground truth), ``pred_<i>``
(the i-th label's points), ``labels`` (the report's labels, in order) and the clip's ``clip_id``, ``identity``,
``family``, ``language`` and ``fold`` (-1 outside ``--folds``). Written atomically, so a killed run leaves whole
files; :func:`load_predictions` reads them back (no pickles).
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..files import PathLike, atomic_write_bytes
from .results import ClipRecord

__all__ = ["ClipPredictions", "PredictionWriter", "load_predictions"]


def _file_name(clip_id: str) -> str:
    """A file name for ``clip_id`` that stays unique when its odd characters are replaced."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", clip_id).strip("._")[:80] or "clip"
    return f"{safe}-{hashlib.sha1(clip_id.encode()).hexdigest()[:8]}.npz"


class PredictionWriter:
    """The ``predictions`` callback of :func:`~.evaluate.evaluate`: one file per clip in ``folder``; set
    :attr:`fold` before each fold's evaluation."""

    def __init__(self, folder: PathLike):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        for old in self.folder.glob("*.npz"):  # an earlier report's, which this run's report replaces
            old.unlink()
        self.fold = -1
        self.count = 0

    def __call__(self, rec: ClipRecord, gt: np.ndarray, preds: dict[str, np.ndarray]) -> None:
        arrays = {f"pred_{i}": np.asarray(p, np.float32) for i, p in enumerate(preds.values())}
        buf = io.BytesIO()
        np.savez_compressed(
            buf,
            real=np.asarray(gt, np.float32),
            labels=np.array(list(preds), dtype=str),
            clip_id=np.array(rec.clip_id),
            identity=np.array(rec.identity),
            family=np.array(rec.family),
            language=np.array(rec.language),
            fold=np.array(self.fold),
            **arrays,
        )
        atomic_write_bytes(self.folder / _file_name(rec.clip_id), buf.getvalue())
        self.count += 1


@dataclass
class ClipPredictions:
    clip_id: str
    identity: str
    family: str
    language: str
    fold: int
    real: np.ndarray  # (T, 68, 2)
    predictions: dict[str, np.ndarray]  # label -> (T, 68, 2)


def load_predictions(folder: PathLike) -> Iterator[ClipPredictions]:
    """The clips saved in ``folder`` (``REPORT_DIR/predictions``), sorted by file name."""
    folder = Path(folder)
    files = sorted(folder.glob("*.npz"))
    if not files:
        raise InputError(f"{folder} holds no saved predictions; write them with a2k eval --save-predictions")
    for path in files:
        with np.load(path, allow_pickle=False) as z:
            labels = [str(x) for x in z["labels"]]
            yield ClipPredictions(
                str(z["clip_id"]),
                str(z["identity"]),
                str(z["family"]),
                str(z["language"]),
                int(z["fold"]),
                z["real"],
                {lb: z[f"pred_{i}"] for i, lb in enumerate(labels)},
            )
