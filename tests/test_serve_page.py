"""The browser page of ``a2k serve`` (docs/serve.md, "The browser page") in a real headless Chromium (Debian's),
driven with playwright, against a real ``a2k serve`` process on 127.0.0.1. The microphone is Chromium's fake capture
device playing a WAV file: 3.5 s of the bundled speech sample, then 2.5 s of digital silence. The test reads what
the page shows (its ``window.a2kState`` and the text on screen): keypoint frames arrive, at the real-time rate, with
the latency the page measures, and the mouth moves where the speech is and rests in the silence."""

from __future__ import annotations

import math
import re
import shutil
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("websockets")
playwright_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs playwright (dev extra)")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")

from a2k_toolkit.audio import load_audio, write_wav  # noqa: E402
from a2k_toolkit.testing import BROWSER_ARGS, FAKE_MIC_ARGS, serve_process  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SPEECH = REPO / "a2k_toolkit" / "samples" / "speech.wav"
TOKEN = "page-test-token"
MIC_RATE = 48000
SPEECH_S, SILENCE_S = 3.5, 2.5  # the fake microphone's file: speech, then zeros
# frames by their time in that file, with margins for where capture starts, the lookahead and the gate's widening
LOUD, SILENT = (0.5, SPEECH_S - 0.3), (SPEECH_S + 0.7, SPEECH_S + SILENCE_S - 0.1)
FPS = 25


@pytest.fixture(scope="module")
def mic_wav(tmp_path_factory) -> Path:
    """Continuous speech of the bundled sample (3.0-6.5 s: no pause there), then digital silence, at 48 kHz."""
    wav = load_audio(SPEECH, MIC_RATE)
    a = 3 * MIC_RATE
    speech = wav[a : a + int(SPEECH_S * MIC_RATE)]
    assert len(speech) == int(SPEECH_S * MIC_RATE) and np.sqrt(np.mean(speech**2)) > 0.03
    path = tmp_path_factory.mktemp("a2k-page") / "mic.wav"
    write_wav(path, np.concatenate([speech, np.zeros(int(SILENCE_S * MIC_RATE), np.float32)]), MIC_RATE)
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``a2k serve`` as a user runs it, with a token; the shipped model with its silence gate on (docs/model.md), so
    that the mouth rests in silence (without it the model keeps moving the mouth there, docs/results.md)."""
    d = tmp_path_factory.mktemp("a2k-serve")
    config = d / "serve.yaml"
    config.write_text("generator: {name: audio2keypoint, params: {silence_gate_db: 25}}\ndevice: cpu\n")
    args = ["--config", str(config), "--token", TOKEN, "--log-level", "warning"]
    try:
        with serve_process(args, d / "serve.log", cwd=REPO, timeout_s=120) as (_, addr, _):
            yield f"http://{addr}"
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture
def page(mic_wav):
    """A fresh headless Chromium whose microphone plays ``mic_wav`` once (then nothing: ``%noloop``)."""
    with playwright_api.sync_playwright() as p:
        args = [*BROWSER_ARGS, *FAKE_MIC_ARGS, f"--use-file-for-fake-audio-capture={mic_wav}%noloop"]
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            pg = browser.new_page(viewport={"width": 1280, "height": 800})
            pg.a2k_errors = []
            pg.on("pageerror", lambda e: pg.a2k_errors.append(str(e)))
            yield pg
        finally:
            browser.close()


def open_page(page, url: str) -> None:
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_function("() => window.a2kState && window.a2kState.status === 'idle'", timeout=15_000)


def js_round(x: float) -> int:
    """JavaScript's Math.round (halves up; Python's round() rounds them to even)."""
    return math.floor(x + 0.5)


def state(page) -> dict:
    return page.evaluate("() => window.a2kState")


SCREEN = """() => {
  const s = window.a2kState, text = (id) => document.getElementById(id).textContent;
  return {state: s, frames: text('frames'), fps: text('fps'), latency: text('latency'), mouth: text('mouth'),
          lookahead: text('lookahead-ms'), status: text('status')};
}"""


def test_the_microphone_drives_the_keypoints_in_real_time(page, server):
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    open_page(page, f"{server}/?token={TOKEN}")
    page.click("#start")
    page.wait_for_function("() => ['streaming', 'error'].includes(window.a2kState.status)", timeout=20_000)
    st = state(page)
    assert st["status"] == "streaming", st["message"]
    assert st["capture"] == "audioworklet" and st["ready"]["fps"] == FPS
    # until the frames reach the end of the file (by the file's clock: the audio before the server was ready is
    # captured but not sent, droppedSeconds of it)
    page.wait_for_function(
        "(end) => { const s = window.a2kState; const f = s.frames[s.frames.length - 1];"
        " return s.status !== 'streaming' || (f && f.t + s.droppedSeconds >= end); }",
        arg=SILENT[1],
        timeout=30_000,
    )
    shown = page.evaluate(SCREEN)
    st = shown["state"]
    assert st["status"] == "streaming" and st["error"] is None, st["message"]
    frames = st["frames"]
    index = [f["index"] for f in frames]
    assert index == list(range(len(frames))) and len(frames) == st["framesReceived"]
    assert all(abs(f["t"] - f["index"] / FPS) < 1e-4 for f in frames)

    # real-time rate: the microphone gives audio at its own pace, the frames follow it, not faster, not slower
    arrival = np.array([f["arrival"] for f in frames]) / 1000.0
    steady = arrival >= arrival[0] + 1.0
    rate = (steady.sum() - 1) / (arrival[steady][-1] - arrival[steady][0])
    assert 20.0 <= rate <= 32.0, rate
    sent = st["audioSentSeconds"]
    # a frame per 40 ms of audio sent: never ahead of the audio, behind it by the latency only
    assert len(frames) / FPS <= sent + 0.05 and sent - len(frames) / FPS < 1.5, (len(frames), sent)
    assert 20.0 <= st["fps"] <= 32.0

    # latency: a frame cannot come before the audio its lookahead waits for; it comes soon after
    lat = st["latency"]
    expected = st["ready"]["latency_ms"]
    assert lat["count"] >= len(frames) - 30
    assert expected - 40 <= lat["p50"] <= expected + 1000, (lat, expected)
    assert lat["p95"] <= expected + 1500, (lat, expected)

    # what is on screen is the state
    assert shown["frames"] == str(len(frames))
    assert shown["fps"] == f"{st['fps']:.1f} fps"
    assert shown["latency"] == f"{js_round(lat['last'])} ms (p50 {js_round(lat['p50'])}, p95 {js_round(lat['p95'])})"
    assert shown["mouth"] == f"{st['mouth']:.3f}"
    assert shown["lookahead"].startswith(f"{js_round(expected)} ms")

    # the mouth: open where the file is loud, at rest (the photo's own opening) where it is silent
    file_t = np.array([f["t"] + 0.5 / FPS for f in frames]) + st["droppedSeconds"]
    mouth = np.array([f["mouth"] for f in frames])
    loud = mouth[(file_t >= LOUD[0]) & (file_t < LOUD[1])]
    silent = mouth[(file_t >= SILENT[0]) & (file_t < SILENT[1])]
    assert len(loud) >= 25 and len(silent) >= 25, (len(loud), len(silent), st["droppedSeconds"])
    print(
        f"\npage: {rate:.1f} fps steady, latency p50 {lat['p50']:.0f} ms p95 {lat['p95']:.0f} ms (lookahead + window "
        f"{expected:.0f} ms), mouth loud {loud.mean():.3f} +- {loud.std():.3f} (max {loud.max():.3f}) silent "
        f"{silent.mean():.3f} +- {silent.std():.3f} reference {mouth[0]:.3f}, "
        f"{st['droppedSeconds']:.2f} s captured before ready"
    )
    # it moves with the speech, opening and closing there; the level it moves about sits a little below this smiling
    # photo's own opening (keep_mouth_shape: the network's frame-0 mouth, opened by the speech that starts at once, is
    # taken as its error for this face; docs/model.md), so the test is on the motion, not on the level
    assert loud.std() > silent.std() + 0.01 and np.ptp(loud) > 0.04, (loud.std(), np.ptp(loud), silent.std())
    assert abs(silent.mean() - mouth[0]) < 0.01 and silent.std() < 0.005, (silent.mean(), silent.std(), mouth[0])

    # the photo is drawn with the keypoints: the lips' colour is on the canvas
    lips = page.evaluate(
        """() => { const c = document.getElementById('view'), d = c.getContext('2d')
                     .getImageData(0, 0, c.width, c.height).data; let n = 0;
                   for (let i = 0; i < d.length; i += 4) if (d[i] > 200 && d[i + 1] < 60 && d[i + 2] > 40) n++;
                   return n; }"""
    )
    assert lips > 50, lips

    # Stop: the page ends the stream, the server sends the rest and "done"
    page.click("#stop")
    page.wait_for_function("() => ['done', 'error'].includes(window.a2kState.status)", timeout=15_000)
    st = state(page)
    assert st["status"] == "done", st["message"]
    assert st["done"]["frames"] == st["framesReceived"] == len(st["frames"])
    assert [f["index"] for f in st["frames"]] == list(range(st["framesReceived"]))
    # self-contained: nothing but the server's own page, script, worklet and sample photo
    assert requests and all(u.startswith((server + "/", "data:")) for u in requests), requests
    assert not page.a2k_errors, page.a2k_errors


def test_without_the_token_the_page_shows_the_refusal(page, server):
    open_page(page, f"{server}/")
    page.click("#start")
    page.wait_for_function("() => window.a2kState.status === 'error'", timeout=20_000)
    text = page.locator("#status").inner_text()
    assert "a valid token is needed" in text and "?token=" in text, text
    assert state(page)["framesReceived"] == 0 and not page.a2k_errors


def test_a_photo_without_a_face_shows_the_servers_message(page, server):
    import cv2

    open_page(page, f"{server}/?token={TOKEN}")
    ok, png = cv2.imencode(".png", np.full((240, 320, 3), 128, np.uint8))
    page.set_input_files("#photo", files=[{"name": "wall.png", "mimeType": "image/png", "buffer": png.tobytes()}])
    page.wait_for_function("() => window.a2kState.message.includes('wall.png')", timeout=10_000)
    page.click("#start")
    page.wait_for_function("() => window.a2kState.status === 'error'", timeout=20_000)
    text = page.locator("#status").inner_text()
    assert "no face found in the image (320x240 px)" in text, text
    assert "Traceback" not in text and not page.a2k_errors


def test_the_page_and_its_scripts_are_served_with_a_strict_policy(server):
    for path, ctype in [("/", "text/html"), ("/app.js", "text/javascript"), ("/capture-worklet.js", "text/javascript")]:
        with urllib.request.urlopen(server + path, timeout=10) as r:
            assert r.headers["Content-Type"].startswith(ctype)
            csp = r.headers["Content-Security-Policy"]
            assert "default-src 'self'" in csp and "connect-src 'self'" in csp
            body = r.read().decode()
        # no CDN: the page loads only what this server serves (the browser test records every request)
        assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", body), path
        assert not re.search(r"""\bimport\b[^;]*["'](?:https?:)?//""", body), path
