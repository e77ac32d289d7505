"""a2k-wav2vec: a wav2vec 2.0 / HuBERT audio front-end for a2k-toolkit (component name ``wav2vec``)."""

from __future__ import annotations

__version__ = "0.1.0"

from .frontend import ModelUnavailableError, Wav2VecFrontend, Wav2VecParams

__all__ = ["ModelUnavailableError", "Wav2VecFrontend", "Wav2VecParams", "__version__"]
