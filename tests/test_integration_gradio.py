"""integrations/gradio: the web demo in a real headless Chromium (Debian's), driven with playwright."""

from __future__ import annotations

import importlib.util
import io
import shutil
import socket
import sys
from pathlib import Path

import numpy as np
import pytest

gr = pytest.importorskip("gradio", reason="the web demo needs `pip install 'a2k-toolkit[gradio]'`")
playwright_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs playwright")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
REPO = Path(__file__).resolve().parents[1]
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def demo_url():
    spec = importlib.util.spec_from_file_location("a2k_gradio_app", REPO / "integrations" / "gradio" / "app.py")
    app = importlib.util.module_from_spec(spec)
    sys.modules["a2k_gradio_app"] = app
    spec.loader.exec_module(app)
    demo = app.build_demo({"renderer": {"name": "sketch", "params": {"size": 128}}, "device": "cpu"})
    port = free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.fixture(scope="module")
def page(demo_url):
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        pg = browser.new_page(viewport={"width": 1280, "height": 1000})
        yield pg
        browser.close()


def open_demo(page, url):
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_selector("#generate", timeout=60_000)


def wait_for_video(page) -> dict:
    page.wait_for_function("() => { const v = document.querySelector('#video video');"
                           " return v && v.readyState >= 2 && v.videoWidth > 0; }", timeout=120_000)  # fmt: skip
    return page.evaluate("() => { const v = document.querySelector('#video video');"
                         " return {w: v.videoWidth, h: v.videoHeight, duration: v.duration}; }")  # fmt: skip


def sketch_colours(png: bytes) -> dict[str, int]:
    """Pixels of the sketch renderer's part colours in a screenshot: lips (red-pink), eyes (green), jaw (white)."""
    import cv2

    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1].astype(int)
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    return {"lips": int(((r > 180) & (g < 110) & (b > 40)).sum()), "eyes": int(((g > 180) & (r < 90) & (b < 90)).sum()),
            "jaw": int(((r > 200) & (g > 200) & (b > 200)).sum())}  # fmt: skip


def test_upload_face_and_audio_gives_a_playing_video_and_keypoints(page, demo_url, dub_media, tmp_path):
    open_demo(page, demo_url)
    page.locator("#face input[type=file]").set_input_files(str(dub_media.face))
    page.locator("#speech input[type=file]").set_input_files(str(dub_media.speech1))
    page.wait_for_selector("#speech audio, #speech canvas, #speech [data-testid='waveform-x']", timeout=30_000,
                           state="attached")  # fmt: skip
    page.click("#generate")
    info = wait_for_video(page)
    assert (info["w"], info["h"]) == (128, 128) and abs(info["duration"] - 1.0) < 0.1
    assert page.locator("#status textarea").input_value() == "25 frames (1.00 s at 25 fps)"
    shot = page.locator("#video video").screenshot(path=str(tmp_path / "video.png"))
    colours = sketch_colours(shot)
    assert colours["lips"] > 200 and colours["eyes"] > 100 and colours["jaw"] > 200, colours
    # the keypoint download serves the file the pipeline wrote
    href = page.locator("#keypoints a").first.get_attribute("href")
    body = page.request.get(href).body()
    with np.load(io.BytesIO(body)) as z:
        assert z["points"].shape == (25, 68, 2)


def test_text_and_language_gives_a_video(page, demo_url, dub_media):
    open_demo(page, demo_url)
    page.locator("#face input[type=file]").set_input_files(str(dub_media.face2))
    page.fill("#text textarea", "Guten Morgen.")
    page.locator("#lang input").fill("de")
    page.locator("#lang input").press("Enter")
    page.click("#generate")
    info = wait_for_video(page)
    assert info["duration"] > 0.3
    assert "frames" in page.locator("#status textarea").input_value()
    assert sketch_colours(page.locator("#video video").screenshot())["lips"] > 100


def test_missing_face_shows_the_error(page, demo_url):
    open_demo(page, demo_url)
    page.fill("#text textarea", "Hello.")
    page.click("#generate")
    page.get_by_text("Upload a face image first.").first.wait_for(timeout=30_000)
    assert page.locator("#video video").count() == 0
