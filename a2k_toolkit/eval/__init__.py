"""Evaluation: keypoint metrics (:mod:`.metrics`), :func:`evaluate` over clips, and the report (:mod:`.report`)."""

from .evaluate import METRICS, REAL_METRICS, ClipRecord, EvalResults, evaluate

__all__ = ["METRICS", "REAL_METRICS", "ClipRecord", "EvalResults", "evaluate"]
