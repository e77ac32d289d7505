"""a2k-face-translator: a few-shot keypoint-to-face translator (after Zakharov et al. 2019) for a2k-toolkit.

* renderer ``face-translator`` (registered through the ``a2k_toolkit`` entry point, module ``plugin``);
* ``python -m a2k_face_translator.train meta|finetune ...``: meta-training on talking-head clips, few-shot
  fine-tuning on one person; checkpoints are safetensors.

Heavy modules (torch models, training) are imported on use.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .renderer import FaceTranslatorRenderer

__all__ = ["FaceTranslatorRenderer", "__version__"]
