"""integrations/gradio: the web demo in a real headless Chromium (Debian's), driven with playwright."""

from __future__ import annotations

import importlib.util
import io
import shutil
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from a2k_toolkit.testing import BROWSER_ARGS, free_port

gr = pytest.importorskip("gradio", reason="the web demo needs `pip install 'a2k-toolkit[gradio]'`")
playwright_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs playwright")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory) -> Path:
    """The demo's folder of per-request outputs."""
    return tmp_path_factory.mktemp("a2k-gradio-out")


@pytest.fixture(scope="module")
def demo_url(demo_out):
    spec = importlib.util.spec_from_file_location("a2k_gradio_app", REPO / "integrations" / "gradio" / "app.py")
    app = importlib.util.module_from_spec(spec)
    sys.modules["a2k_gradio_app"] = app
    spec.loader.exec_module(app)
    demo = app.build_demo({"renderer": {"name": "sketch", "params": {"size": 128}}, "device": "cpu"}, out_root=demo_out)
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
    page.wait_for_function(
        "() => { const v = document.querySelector('#video video');"
        " return v && v.readyState >= 2 && v.videoWidth > 0; }",
        timeout=120_000,
    )
    return page.evaluate(
        "() => { const v = document.querySelector('#video video');"
        " return {w: v.videoWidth, h: v.videoHeight, duration: v.duration}; }"
    )


def sketch_colours(png: bytes) -> dict[str, int]:
    """Pixels of the sketch renderer's part colours in a screenshot: lips (red-pink), eyes (green), jaw (white)."""
    import cv2

    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1].astype(int)
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    return {
        "lips": int(((r > 180) & (g < 110) & (b > 40)).sum()),
        "eyes": int(((g > 180) & (r < 90) & (b < 90)).sum()),
        "jaw": int(((r > 200) & (g > 200) & (b > 200)).sum()),
    }


def test_upload_face_and_audio_gives_a_playing_video_and_keypoints(page, demo_url, dub_media, tmp_path):
    open_demo(page, demo_url)
    page.locator("#face input[type=file]").set_input_files(str(dub_media.face))
    page.locator("#speech input[type=file]").set_input_files(str(dub_media.speech1))
    page.wait_for_selector(
        "#speech audio, #speech canvas, #speech [data-testid='waveform-x']", timeout=30_000, state="attached"
    )
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


# ------------------------------------------------------------------ bad uploads and limits (issue 16 items 4, 7)


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` pixels in a few hundred bytes (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 4096)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def submit(page, url, face, *, audio=None, text=None):
    """Open the demo, upload ``face`` (a path or a (name, mime type, bytes) triple) and speech or text, click."""
    open_demo(page, url)
    if isinstance(face, tuple):
        face = {"name": face[0], "mimeType": face[1], "buffer": face[2]}
    page.locator("#face input[type=file]").set_input_files(face if isinstance(face, dict) else str(face))
    if audio is not None:
        page.locator("#speech input[type=file]").set_input_files(str(audio))
        page.wait_for_selector(
            "#speech audio, #speech canvas, #speech [data-testid='waveform-x']", timeout=30_000, state="attached"
        )
    if text is not None:
        page.fill("#text textarea", text)
    page.click("#generate")


def shown_error(page, needle: str) -> str:
    """The text of the page once ``needle`` (part of the demo's error message) is on it; never gradio's generic one."""
    page.get_by_text(needle).first.wait_for(timeout=60_000)
    body = page.locator("body").inner_text()
    assert "upstream Gradio app has raised an exception" not in body and "/tmp/" not in body, body
    return body


def test_a_non_image_or_a_decompression_bomb_gets_the_toolkits_message(page, demo_url):
    submit(page, demo_url, ("notes.png", "image/png", b"plain text, not an image"), text="Hello.")
    assert "notes.png: not a supported image file" in shown_error(page, "not a supported image file")
    submit(page, demo_url, ("bomb.png", "image/png", png_header(30000, 30000)), text="Hello.")
    shown_error(page, "over the limit of 100 megapixels")
    assert page.locator("#video video").count() == 0


def test_corrupt_audio_is_named_by_its_file_name_not_the_server_path(page, demo_url, dub_media):
    submit(page, demo_url, dub_media.face, audio=dub_media.corrupt)
    assert "corrupt.wav" in shown_error(page, "is corrupt or not in a supported format")


def test_upload_limits_bytes_and_audio_seconds(page, demo_url, dub_media, monkeypatch):
    monkeypatch.setenv("A2K_DEMO_MAX_AUDIO_SECONDS", "1")
    submit(page, demo_url, dub_media.face, audio=dub_media.speech2)
    shown_error(page, "speech2.wav is 2 s long, over this demo's limit of 1 s")
    monkeypatch.setenv("A2K_DEMO_MAX_UPLOAD_BYTES", "1000")
    submit(page, demo_url, dub_media.face, text="Hello.")
    shown_error(page, "obama.jpg is 0.")
    assert "A2K_DEMO_MAX_UPLOAD_BYTES" in page.locator("body").inner_text()


def test_only_the_newest_output_folders_are_kept(page, demo_url, demo_out, dub_media, monkeypatch):
    monkeypatch.setenv("A2K_DEMO_KEEP_OUTPUTS", "1")
    for _ in range(2):
        submit(page, demo_url, dub_media.face, audio=dub_media.speech1)
        wait_for_video(page)
    folders = list(demo_out.glob("a2k-demo-*"))
    assert len(folders) == 1 and (folders[0] / "keypoints.npz").is_file(), folders


def api_call(url: str, data: list) -> tuple[str, dict]:
    """Call the demo's ``generate`` endpoint over HTTP as an API client would: (the final event, its data)."""
    import json

    import httpx

    event_id = httpx.post(f"{url}gradio_api/call/generate", json={"data": data}, timeout=30).json()["event_id"]
    stream = httpx.get(f"{url}gradio_api/call/generate/{event_id}", timeout=60).text
    events = [line.removeprefix("event: ") for line in stream.splitlines() if line.startswith("event: ")]
    payloads = [line.removeprefix("data: ") for line in stream.splitlines() if line.startswith("data: ")]
    return events[-1], json.loads(payloads[-1])


def test_an_api_call_naming_a_server_path_gets_the_demos_message(demo_url, dub_media):
    """A file named by its path on the server (absolute, or with ``..``) is refused by gradio before the handler runs;
    the caller gets the demo's message, not gradio's bare error, and the file is not read (a real face image there
    would otherwise give a video)."""
    from gradio.utils import get_upload_folder

    def file(path: str) -> dict:
        return {"path": path, "orig_name": "face.jpg", "meta": {"_type": "gradio.FileData"}}

    face = Path(dub_media.face).resolve()
    dotdot = str(
        Path(get_upload_folder()) / Path(*[".."] * len(Path(get_upload_folder()).parts)) / face.relative_to("/")
    )
    for image, audio in [
        (file(str(face)), None),
        (file(dotdot), None),
        (file(str(face)), file(str(dub_media.speech1))),
    ]:
        event, data = api_call(demo_url, [image, audio, None if audio else "Hello.", "en"])
        assert event == "error" and data["error"], (event, data)
        message = data["error"]
        assert "paths on the server are not accepted" in message and "upload the file" in message, message
        assert str(face.parent) not in message and ".." not in message, message
        assert message.startswith("The face image and the speech audio name files" if audio else "The face image names")
    # an upload that is gone (gradio deletes them after an hour) is named by its file name, not the server's path
    event, data = api_call(
        demo_url, [file(str(Path(get_upload_folder()) / "a2k-gone" / "face.jpg")), None, "Hi.", "en"]
    )
    assert event == "error" and data["error"].startswith("The face image face.jpg was not found on the server"), data
    assert get_upload_folder() not in data["error"]
