"""The CMU phone set of pocketsphinx's en-us model and its grouping into viseme (mouth-shape) classes.

The groups follow what the lips, jaw and visible tongue do, not how the sound is made: phones that look alike on a
face share a class (``p``, ``b`` and ``m`` all close the lips). Diphthongs go with their first, longer part
(``ay`` starts open, ``oy`` rounded). ``hh`` has no shape of its own (it takes the next vowel's) and goes with the
open vowels, the commonest case. Noise and filler units of the recogniser (``+NSN+``, ``+SPN+``, ...) count as
silence: the mouth shape they imply is unknown.
"""

from __future__ import annotations

SILENCE = "SIL"

#: the 39 phones of the CMU dictionary plus silence, in feature order for ``units: phone``
PHONES: tuple[str, ...] = (
    "SIL",
    "AA",
    "AE",
    "AH",
    "AO",
    "AW",
    "AY",
    "B",
    "CH",
    "D",
    "DH",
    "EH",
    "ER",
    "EY",
    "F",
    "G",
    "HH",
    "IH",
    "IY",
    "JH",
    "K",
    "L",
    "M",
    "N",
    "NG",
    "OW",
    "OY",
    "P",
    "R",
    "S",
    "SH",
    "T",
    "TH",
    "UH",
    "UW",
    "V",
    "W",
    "Y",
    "Z",
    "ZH",
)

#: viseme class -> its phones, in feature order for ``units: viseme``
VISEME_PHONES: dict[str, tuple[str, ...]] = {
    "silence": ("SIL",),
    "bilabial": ("P", "B", "M"),  # lips closed
    "labiodental": ("F", "V"),  # lower lip to upper teeth
    "dental": ("TH", "DH"),  # tongue tip between the teeth
    "alveolar": ("T", "D", "N", "L"),  # tongue tip up behind the teeth, jaw half closed
    "velar": ("K", "G", "NG"),  # back of the tongue, jaw half open
    "postalveolar": ("CH", "JH", "SH", "ZH"),  # lips pushed forward, teeth close
    "sibilant": ("S", "Z"),  # teeth close, lips spread
    "rhotic": ("R", "ER"),  # lips slightly rounded
    "open": ("AA", "AE", "AH", "AY", "AW", "HH"),  # jaw wide open
    "mid-front": ("EH", "EY"),  # jaw half open, lips spread
    "close-front": ("IH", "IY", "Y"),  # jaw nearly closed, lips spread
    "mid-rounded": ("AO", "OW", "OY"),  # jaw open, lips rounded
    "close-rounded": ("UW", "UH", "W"),  # lips rounded and protruded
}

VISEMES: tuple[str, ...] = tuple(VISEME_PHONES)

_PHONE_TO_VISEME = {ph: v for v, phones in VISEME_PHONES.items() for ph in phones}
assert sorted(_PHONE_TO_VISEME) == sorted(PHONES), "every phone must be in exactly one viseme class"


def normalize_phone(unit: str) -> str:
    """A recogniser output unit as a CMU phone: upper case, stress digits dropped; noise and filler units (and
    anything unknown) become ``SIL``."""
    ph = unit.strip().upper().rstrip("012")
    return ph if ph in _PHONE_TO_VISEME else SILENCE


def phone_to_viseme(unit: str) -> str:
    """The viseme class of a recogniser output unit (see :func:`normalize_phone`)."""
    return _PHONE_TO_VISEME[normalize_phone(unit)]
