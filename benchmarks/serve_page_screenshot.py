"""A screenshot of ``a2k serve``'s browser page while it streams: the figure of README.md and docs/serve.md.

    python benchmarks/serve_page_screenshot.py [--out docs/images/serve-page.png] [--seconds 3]

Starts a real ``a2k serve`` on 127.0.0.1 (a free port, the default pipeline: the shipped audio2keypoint), opens its
page in headless Chromium (Debian's ``chromium``, driven by playwright, as tests/test_serve_page.py does) whose fake
microphone plays the bundled speech sample, clicks Start, lets it stream for ``--seconds`` (then waits, for at most
2 s more, for a frame with the mouth open wider than the photo's) and saves a PNG of the page, reduced to a
256-colour palette when that keeps it under ``--max-kb``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from a2k_toolkit.audio import load_audio, write_wav  # noqa: E402
from a2k_toolkit.testing import BROWSER_ARGS, FAKE_MIC_ARGS, serve_process  # noqa: E402

SPEECH = REPO / "a2k_toolkit" / "samples" / "speech.wav"
MIC_RATE = 48000


@contextlib.contextmanager
def serving(log: Path, startup_s: float = 180.0):
    """``a2k serve`` as a user starts it, on a free port of 127.0.0.1; yields its URL once /healthz answers."""
    try:
        with serve_process(["--log-level", "warning"], log, cwd=REPO, timeout_s=startup_s) as (_, addr, _):
            yield f"http://{addr}"
    except RuntimeError as exc:
        raise SystemExit(str(exc)) from exc


def shrink(png: bytes, max_kb: int) -> bytes:
    """``png`` as it is when small enough, else reduced to a 256-colour palette (the page is mostly flat colour)."""
    if len(png) <= max_kb * 1024:
        return png
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    small = io.BytesIO()
    img.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        small, "PNG", optimize=True
    )
    return small.getvalue()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "images" / "serve-page.png")
    ap.add_argument("--seconds", type=float, default=3.0, help="seconds of streaming before the screenshot")
    ap.add_argument("--width", type=int, default=1100)
    ap.add_argument("--height", type=int, default=600)
    ap.add_argument("--max-kb", type=int, default=200)
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("needs Chromium (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="a2k-shot-") as tmp:
        mic = Path(tmp) / "mic.wav"
        write_wav(mic, load_audio(SPEECH, MIC_RATE), MIC_RATE)
        with serving(Path(tmp) / "serve.log") as url, sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=chromium,
                args=[*BROWSER_ARGS, *FAKE_MIC_ARGS, f"--use-file-for-fake-audio-capture={mic}%noloop"],
            )
            try:
                page = browser.new_page(viewport={"width": args.width, "height": args.height})
                page.goto(url + "/", wait_until="domcontentloaded")
                page.wait_for_function("() => window.a2kState && window.a2kState.status === 'idle'", timeout=15_000)
                page.click("#start")
                page.wait_for_function("() => ['streaming', 'error'].includes(window.a2kState.status)", timeout=30_000)
                st = page.evaluate("() => window.a2kState")
                if st["status"] != "streaming":
                    raise SystemExit(f"the page did not stream: {st['message']}")
                time.sleep(args.seconds)
                # a moment with the mouth open (the photo's own opening is frame 0's)
                with contextlib.suppress(Exception):
                    page.wait_for_function(
                        "() => { const s = window.a2kState; return s.frames.length > 0"
                        " && s.mouth > s.frames[0].mouth + 0.04; }",
                        timeout=2_000,
                        polling=20,
                    )
                page.evaluate("() => window.scrollTo(0, 0)")  # clicking Start may have scrolled the page
                png = page.screenshot(full_page=False)
                st = page.evaluate("() => window.a2kState")
            finally:
                browser.close()
    data = shrink(png, args.max_kb)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(data)
    lat = st["latency"]
    print(
        f"{args.out}: {len(data) // 1024} KB; {st['framesReceived']} frames, {st['fps']:.1f} fps, latency p50 "
        f"{lat['p50']:.0f} ms (server's latency_ms {st['ready']['latency_ms']:.0f}), mouth {st['mouth']:.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
