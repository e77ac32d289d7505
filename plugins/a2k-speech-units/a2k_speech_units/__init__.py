"""a2k-speech-units: speaker-independent audio front-ends for a2k-toolkit.

``vad`` (voice activity from silero-vad's bundled model, plus relative loudness) and ``phonetic`` (viseme or phone
classes from pocketsphinx's bundled en-us phone recogniser). Importing this package is cheap: the models load on
first use.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .phonetic import PhoneticFrontend, PhoneticParams
from .vad import VADFrontend, VADParams
from .visemes import PHONES, VISEME_PHONES, VISEMES, phone_to_viseme

__all__ = [
    "PHONES",
    "VISEME_PHONES",
    "VISEMES",
    "PhoneticFrontend",
    "PhoneticParams",
    "VADFrontend",
    "VADParams",
    "phone_to_viseme",
    "__version__",
]
