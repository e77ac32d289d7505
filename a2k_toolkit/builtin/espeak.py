"""Speech synthesizer ``espeak``: text to speech with espeak-ng, in any of its 100+ languages, no network needed.

The language comes from ``synthesize(text, lang)`` (``a2k generate --text ... --lang de``) or from the ``voice``
parameter; ``variant`` picks one of espeak-ng's voice variants (``f3``, ``m1``, ``klatt``, ``Alicia``, ...), applied
to any language. :func:`languages` and :func:`variants` list what the installed espeak-ng has (``a2k voices`` prints
them). An unknown language raises :class:`~a2k_toolkit.errors.InputError` with the closest matches.

The text goes to espeak-ng on stdin (no length limit on the command line, and text starting with ``-`` is not
taken for an option); the WAV it streams to stdout carries placeholder sizes (it cannot seek back on a pipe), so it
is decoded by :func:`~a2k_toolkit.audio.parse_wav_bytes`, which reads the data to the end.
"""

from __future__ import annotations

import difflib
import functools
import re
import shutil
import subprocess
import warnings
from dataclasses import dataclass

import numpy as np
from pydantic import Field

from ..components import Params, SpeechSynthesizer
from ..errors import A2KError, InputError
from ..hookspecs import hookimpl


@functools.lru_cache(maxsize=1)
def espeak_exe() -> str:
    exe = shutil.which("espeak-ng") or shutil.which("espeak")
    if exe is None:
        raise A2KError(
            "text input needs the espeak-ng program, which is not installed; install it with "
            "`apt-get install espeak-ng` (Debian/Ubuntu), `brew install espeak-ng` (macOS) or from espeak-ng's releases"
        )
    return exe


@dataclass(frozen=True)
class Language:
    """One espeak-ng language voice: its code (``de``, ``en-us``), name, voice file and other codes it answers to."""

    code: str
    name: str
    file: str
    aliases: tuple[str, ...] = ()


def _run_listing(arg: str) -> list[list[str]]:
    proc = subprocess.run([espeak_exe(), arg], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise A2KError(f"`espeak-ng {arg}` failed: {proc.stderr.strip() or proc.returncode}")
    rows = []
    for line in proc.stdout.splitlines()[1:]:  # header: Pty Language Age/Gender VoiceName File Other Languages
        parts = line.split(None, 5)
        if len(parts) >= 5:
            rows.append(parts)
    return rows


@functools.lru_cache(maxsize=1)
def languages() -> tuple[Language, ...]:
    """Every language voice of the installed espeak-ng, in its own order (one entry per voice file)."""
    out = []
    for parts in _run_listing("--voices"):
        aliases = tuple(re.findall(r"\(([^\s()]+) \d+\)", parts[5])) if len(parts) > 5 else ()
        out.append(Language(code=parts[1], name=parts[3].replace("_", " "), file=parts[4], aliases=aliases))
    return tuple(out)


@functools.lru_cache(maxsize=1)
def variants() -> tuple[str, ...]:
    """Voice variant names (``f3``, ``m1``, ``klatt``, ``Alicia``, ...), usable with any language."""
    return tuple(parts[4].split("/", 1)[-1] for parts in _run_listing("--voices=variant"))


@functools.lru_cache(maxsize=1)
def _language_index() -> dict[str, str]:
    """Lower-cased code, alias or name -> the code espeak-ng is called with."""
    index: dict[str, str] = {}
    for lang in languages():
        for key in (lang.code, *lang.aliases):
            index.setdefault(key.lower(), key)  # first (highest-priority) voice wins for a shared alias
    for lang in languages():
        index.setdefault(lang.name.lower(), lang.code)
    return index


def resolve_language(lang: str) -> str:
    """The espeak-ng code for a language code, alias or name (case-insensitive); ``de-DE`` falls back to ``de``.

    Raises :class:`InputError` naming the closest matches when there is none.
    """
    key = (lang or "").strip().lower().replace("_", "-")
    index = _language_index()
    if key in index:
        return index[key]
    if key.replace("-", " ") in index:
        return index[key.replace("-", " ")]
    base = key.split("-")[0]
    if base and base in index:
        warnings.warn(f"espeak-ng has no voice for {lang!r}; using {index[base]!r} ({base})", UserWarning, stacklevel=3)
        return index[base]
    close = difflib.get_close_matches(key, list(index), n=4, cutoff=0.6)
    hint = f" Did you mean {', '.join(repr(index[c]) for c in close)}?" if close else ""
    raise InputError(
        f"espeak-ng has no voice or language {lang!r}.{hint} It knows {len(languages())} voices (examples: en, "
        "en-us, de, fr, es, hi, zh, ar); list them with `a2k voices` or `espeak-ng --voices`"
    )


def resolve_variant(variant: str) -> str:
    by_lower = {v.lower(): v for v in variants()}
    if variant.lower() in by_lower:
        return by_lower[variant.lower()]
    close = difflib.get_close_matches(variant.lower(), list(by_lower), n=4, cutoff=0.6)
    hint = f" Did you mean {', '.join(repr(by_lower[c]) for c in close)}?" if close else ""
    raise InputError(
        f"espeak-ng has no voice variant {variant!r}.{hint} Variants include f1-f5, m1-m8, klatt, whisper; list them "
        "with `a2k voices --variants` or `espeak-ng --voices=variant`"
    )


class EspeakSynthesizer(SpeechSynthesizer):
    """Text-to-speech with espeak-ng: 100+ languages, selectable language, voice variant, speed and pitch."""

    name = "espeak"

    class Params(Params):
        voice: str = Field("en", description="default language (code, alias or name: en, en-us, de, hi, French)")
        variant: str | None = Field(None, description="voice variant applied to the language: f3, m1, klatt, ...")
        speed: int = Field(160, ge=80, le=450, description="words per minute")
        pitch: int = Field(50, ge=0, le=99)
        amplitude: int = Field(100, ge=0, le=200)

    @staticmethod
    def languages() -> tuple[Language, ...]:
        return languages()

    @staticmethod
    def variants() -> tuple[str, ...]:
        return variants()

    def voice_for(self, lang: str | None = None) -> str:
        """The ``-v`` argument for ``lang`` (or the configured ``voice``): ``code`` or ``code+variant``."""
        code = resolve_language(lang or self.params.voice)
        return f"{code}+{resolve_variant(self.params.variant)}" if self.params.variant else code

    def synthesize(self, text: str, lang: str | None = None) -> tuple[np.ndarray, int]:
        from ..audio import parse_wav_bytes

        text = (text or "").strip()
        if not text:
            raise InputError("the text to speak is empty; give some words with --text")
        voice = self.voice_for(lang)
        p = self.params
        cmd = [
            espeak_exe(),
            "-v",
            voice,
            "-s",
            str(p.speed),
            "-p",
            str(p.pitch),
            "-a",
            str(p.amplitude),
            "-b",
            "1",
            "--stdin",
            "--stdout",
        ]
        proc = subprocess.run(cmd, input=text.encode("utf-8"), capture_output=True, check=False)
        err = proc.stderr.decode("utf-8", "replace").strip()
        if proc.returncode != 0 or len(proc.stdout) <= 44:  # espeak-ng exits 0 on some errors, with no audio
            raise A2KError(f"espeak-ng could not speak the text with voice {voice!r}: {err or 'no audio produced'}")
        return parse_wav_bytes(proc.stdout)


@hookimpl
def register_speech_synthesizers(register):
    register(EspeakSynthesizer)
