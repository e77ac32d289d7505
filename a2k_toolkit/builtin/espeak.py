"""Speech synthesizer ``espeak``: text to speech with espeak-ng (100+ languages), no network needed."""

from __future__ import annotations

import functools
import io as _io
import shutil
import subprocess

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


@functools.lru_cache(maxsize=1)
def available_voices() -> frozenset[str]:
    """Language / voice codes espeak-ng knows (for example ``en``, ``de``, ``hi``, ``en-us``)."""
    out = subprocess.run([espeak_exe(), "--voices"], capture_output=True, text=True, check=False).stdout
    codes = set()
    for line in out.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 4:
            codes.add(parts[1])
            codes.add(parts[3])
    return frozenset(codes)


class EspeakSynthesizer(SpeechSynthesizer):
    """Text-to-speech with espeak-ng: any of its 100+ languages, selectable voice and speed."""

    name = "espeak"

    class Params(Params):
        voice: str = Field("en", description="espeak-ng voice or language code, e.g. en, en-us, de, hi, fr")
        speed: int = Field(160, ge=80, le=450, description="words per minute")
        pitch: int = Field(50, ge=0, le=99)

    def synthesize(self, text: str, lang: str | None = None) -> tuple[np.ndarray, int]:
        import soundfile as sf

        text = (text or "").strip()
        if not text:
            raise InputError("the text to speak is empty")
        voice = lang or self.params.voice
        known = available_voices()
        if voice not in known and not any(v.startswith(voice + "-") for v in known):
            raise InputError(
                f"espeak-ng has no voice or language {voice!r}; list them with `espeak-ng --voices` "
                "(examples: en, de, fr, es, hi, zh)"
            )
        cmd = [espeak_exe(), "-v", voice, "-s", str(self.params.speed), "-p", str(self.params.pitch), "--stdout",
               "--", text]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, check=False)
        if proc.returncode != 0 or not proc.stdout:
            raise A2KError(f"espeak-ng failed: {proc.stderr.decode('utf-8', 'replace').strip()}")
        data, sr = sf.read(_io.BytesIO(proc.stdout), dtype="float32", always_2d=True)
        return data.mean(axis=1), int(sr)


@hookimpl
def register_speech_synthesizers(register):
    register(EspeakSynthesizer)
