"""A web demo of a2k-toolkit: a face image + speech (uploaded, recorded, or typed text) -> video + keypoint file.

Run it locally (nothing leaves the machine; the pipeline is built once at start-up)::

    python integrations/gradio/app.py [--config cfg.yaml] [--host 127.0.0.1] [--port 7860]

and open the printed address. ``build_demo(...)`` returns the ``gradio.Blocks`` for embedding or testing.

Uploads are bounded (A2K_DEMO_MAX_UPLOAD_BYTES, A2K_DEMO_MAX_AUDIO_SECONDS and the image limits of
``a2k_toolkit.limits``), a bad upload gets the toolkit's message (without the server's paths), and only the newest
A2K_DEMO_KEEP_OUTPUTS per-request output folders are kept; see docs/config.md, Limits. An API call that names a file
on the server (an absolute path, or one with ``..``) instead of uploading it is refused by gradio, and answered with
the demo's message (see ``demo_blocks``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from a2k_toolkit.errors import A2KError, require
from a2k_toolkit.limits import limit

COMMON_LANGS = ["en", "en-us", "de", "fr", "es", "it", "pt", "nl", "pl", "ru", "hi", "zh", "ja", "ar", "tr"]
TITLE = "a2k-toolkit: talking-head keypoints from one face image and speech"


def languages() -> list[str]:
    """The common languages that the installed espeak-ng can speak (all of them when espeak-ng cannot be asked)."""
    import warnings

    from a2k_toolkit.catalog import Catalog
    from a2k_toolkit.plugins import make_plugin_manager

    espeak = Catalog(make_plugin_manager(entry_points=False)).build("speech", "espeak")
    found = []
    for code in COMMON_LANGS:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a region falling back to its base language is fine here
                espeak.voice_for(code)
            found.append(code)
        except A2KError:
            continue
    return found or COMMON_LANGS


class Upload:
    """One uploaded file: where the server keeps it and the name the user gave it (shown in messages instead of the
    server's path)."""

    def __init__(self, payload: Any, what: str):
        if isinstance(payload, dict):  # gradio's FileData (the handler gets the raw upload, see build_demo)
            path, name = payload.get("path"), payload.get("orig_name")
        else:  # a plain path (a Python caller)
            path, name = payload, None
        if not path:
            raise A2KError(f"the {what} did not arrive on the server; upload it again")
        self.path, self.what = str(path), what
        self.name = Path(str(name or path)).name or f"the {what}"  # never a folder part such as ../
        if not os.path.isfile(self.path):  # e.g. an API call reusing an upload that gradio has since deleted
            raise A2KError(
                f"the {what} {self.name} was not found on the server (an upload is deleted an hour after it was "
                "made); upload it again"
            )

    def check_size(self) -> None:
        max_bytes = limit("demo_max_upload_bytes")
        size = os.path.getsize(self.path)
        if max_bytes and size > max_bytes:
            raise A2KError(
                f"the {self.what} {self.name} is {size / 2**20:.1f} MiB, over this demo's limit of "
                f"{max_bytes / 2**20:g} MiB; upload a smaller file (the server's A2K_DEMO_MAX_UPLOAD_BYTES "
                "sets the limit)"
            )

    def hide(self, message: str) -> str:
        """``message`` with the server's path of the file replaced by the user's file name."""
        return message.replace(self.path, self.name)


def check_audio_length(upload: Upload) -> None:
    """Refuse speech longer than A2K_DEMO_MAX_AUDIO_SECONDS, from the file's header (before it is decoded)."""
    from a2k_toolkit.audio import probe_audio

    max_seconds = limit("demo_max_audio_seconds")
    if not max_seconds:
        return
    duration = probe_audio(upload.path).duration
    if duration is not None and duration > max_seconds:
        raise A2KError(
            f"the speech audio {upload.name} is {duration:.0f} s long, over this demo's limit of "
            f"{max_seconds} s; upload a shorter cut (the server's A2K_DEMO_MAX_AUDIO_SECONDS sets the "
            "limit), or use the `a2k generate` command for long audio"
        )


def prune_outputs(out_root: Path) -> None:
    """Delete all but the newest A2K_DEMO_KEEP_OUTPUTS per-request output folders (0 keeps them all). Gradio serves
    the results from its own copies, so a request's folder is not needed once its response is sent."""
    keep = limit("demo_keep_outputs")
    if not keep:
        return
    folders = sorted((d for d in out_root.glob("a2k-demo-*") if d.is_dir()), key=lambda d: d.stat().st_mtime_ns)
    for old in folders[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def make_generate(pipeline, out_root: Path):
    """The click handler: checks the inputs, runs the pipeline, returns (video, keypoint file, status line).

    ``image`` and ``audio`` are gradio's raw uploads (the event does not preprocess them: gradio's own decoding would
    fail with its generic message, and it would read a whole upload before any limit is checked) or file paths."""

    def generate(image: Any, audio: Any, text: str | None, lang: str | None):
        import gradio as gr

        text = (text or "").strip()
        if not image:
            raise gr.Error("Upload a face image first.")
        if bool(audio) == bool(text):
            raise gr.Error("Give either speech audio (upload or record) or text to speak, not both.")
        uploads: list[Upload] = []
        out = None
        try:
            uploads.append(Upload(image, "face image"))
            if audio:
                uploads.append(Upload(audio, "speech audio"))
            for up in uploads:
                up.check_size()
            if audio:
                check_audio_length(uploads[1])
            out = Path(tempfile.mkdtemp(prefix="a2k-demo-", dir=out_root))
            prune_outputs(out_root)
            face = uploads[0].path
            result = pipeline(face, audio=uploads[1].path) if audio else pipeline(face, text=text, lang=lang or None)
            kp, video = out / "keypoints.npz", out / "talking_head.mp4"
            result.save(keypoints=kp, video=video if pipeline.renderer is not None else None)
        except A2KError as exc:  # bad input: show the message (problem and fix), no traceback, no server paths
            if out is not None:
                shutil.rmtree(out, ignore_errors=True)
            message = str(exc)
            for up in uploads:
                message = up.hide(message)
            raise gr.Error(message[:1].upper() + message[1:]) from None
        n = len(result.keypoints)
        status = f"{n} frames ({n / result.keypoints.fps:.2f} s at {result.keypoints.fps:g} fps)"
        return (str(video) if video.exists() else None), str(kp), status

    return generate


def path_refusal(blocks: list[Any], inputs: list[Any]) -> str:
    """The message for inputs that name a file outside gradio's upload folder, which gradio refuses before the handler
    runs: which inputs, and the fix. The path itself is not repeated (it would show how the server resolved it)."""
    from gradio.utils import get_upload_folder, is_in_or_equal

    labels = [
        (getattr(block, "label", None) or "file input").lower()
        for block, value in zip(blocks, inputs)
        if isinstance(value, dict)
        and isinstance(value.get("path"), str)
        and not is_in_or_equal(value["path"], get_upload_folder())
    ]
    many = len(labels) > 1
    what = f"The {' and the '.join(labels)} name files" if many else f"The {labels[0]} names a file"
    if not labels:
        what = "An input names a file"
    return (
        f"{what} on the server instead of uploading {'them' if many else 'it'}; paths on the server are not accepted "
        f"(nothing was read): upload {'the files' if many else 'the file'} (from Python: gradio_client's "
        "handle_file('face.jpg'))"
    )


def demo_blocks(gr):
    """``gr.Blocks`` that answers gradio's refusal of an input file with the demo's message.

    Gradio checks every input file before the handler runs (``preprocess=False`` does not skip it, so the handler
    never sees such a path): one outside its upload folder (an absolute path, or one with ``..``) raises
    ``InvalidPathError``, which its queue reports as an error without a message (gradio_client: "The upstream Gradio
    app has raised an exception"). This turns exactly that refusal into a ``gr.Error``, which is shown to the caller;
    the check is gradio's own and has already refused the path, so the file is not read. Should a later gradio rename
    the step, the override is simply not called: the refusal stands, only with gradio's generic wording."""
    from gradio.exceptions import InvalidPathError

    class DemoBlocks(gr.Blocks):
        async def preprocess_data(self, block_fn, inputs, *args, **kwargs):
            try:
                return await super().preprocess_data(block_fn, inputs, *args, **kwargs)
            except InvalidPathError:
                raise gr.Error(path_refusal(list(block_fn.inputs), list(inputs))) from None

    return DemoBlocks


def build_demo(config: Any = None, pipeline: Any = None, out_root: str | Path | None = None):
    """The Gradio app around one pipeline (built from ``config`` unless given)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # a local demo sends nothing anywhere
    gr = require("gradio", "gradio", "The web demo")
    from a2k_toolkit import Pipeline

    if pipeline is None:
        pipeline = Pipeline.from_config(config)
    root = Path(out_root or tempfile.mkdtemp(prefix="a2k-gradio-"))
    root.mkdir(parents=True, exist_ok=True)
    # gradio keeps its own copies of uploads and results: delete them an hour after they were made (and at exit)
    with demo_blocks(gr)(title="a2k-toolkit demo", analytics_enabled=False, delete_cache=(600, 3600)) as demo:
        gr.Markdown(
            f"## {TITLE}\nUpload a face photo, then upload or record speech, or type text and pick a "
            "language. The result is a 25 fps keypoint video with the speech, and the keypoint file."
        )
        with gr.Row():
            with gr.Column():
                image = gr.Image(type="filepath", label="Face image", elem_id="face")
                audio = gr.Audio(
                    sources=["upload", "microphone"], type="filepath", label="Speech audio", elem_id="speech"
                )
                text = gr.Textbox(label="...or text to speak", placeholder="Hello, world.", elem_id="text")
                langs = languages()
                lang = gr.Dropdown(
                    langs,
                    value="en" if "en" in langs else langs[0],
                    label="Language (for text)",
                    allow_custom_value=True,
                    elem_id="lang",
                )
                button = gr.Button("Generate", variant="primary", elem_id="generate")
            with gr.Column():
                video = gr.Video(label="Talking-head keypoints", elem_id="video")
                keypoints = gr.File(label="Keypoint file (.npz)", elem_id="keypoints")
                status = gr.Textbox(label="Status", interactive=False, elem_id="status")
        # preprocess=False: the handler gets the raw uploads and checks them itself (see make_generate)
        button.click(
            make_generate(pipeline, root), [image, audio, text, lang], [video, keypoints, status], preprocess=False
        )
    return demo


def upload_limit() -> int | None:
    """A2K_DEMO_MAX_UPLOAD_BYTES for ``launch(max_file_size=...)``: gradio then refuses a bigger upload before it is
    stored (``None``: no limit)."""
    return limit("demo_max_upload_bytes") or None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="a2k-gradio", description=TITLE)
    p.add_argument("--config", help="pipeline config file (YAML, JSON or TOML)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 to serve the network)")
    p.add_argument("--port", type=int, default=7860)
    args = p.parse_args(argv)
    try:
        max_file_size = upload_limit()
        demo = build_demo(args.config)
    except A2KError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    demo.queue().launch(server_name=args.host, server_port=args.port, max_file_size=max_file_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
