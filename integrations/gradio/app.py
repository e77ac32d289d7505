"""A web demo of a2k-toolkit: a face image + speech (uploaded, recorded, or typed text) -> video + keypoint file.

Run it locally (nothing leaves the machine; the pipeline is built once at start-up)::

    python integrations/gradio/app.py [--config cfg.yaml] [--host 127.0.0.1] [--port 7860]

and open the printed address. ``build_demo(...)`` returns the ``gradio.Blocks`` for embedding or testing.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from a2k_toolkit.errors import A2KError, require

COMMON_LANGS = ["en", "en-us", "de", "fr", "es", "it", "pt", "nl", "pl", "ru", "hi", "zh", "ja", "ar", "tr"]
TITLE = "a2k-toolkit: talking-head keypoints from one face image and speech"


def languages() -> list[str]:
    """The common languages that the installed espeak-ng can speak (all of them when espeak-ng cannot be asked)."""
    import warnings

    from a2k_toolkit.builtin.espeak import resolve_language

    found = []
    for code in COMMON_LANGS:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a region falling back to its base language is fine here
                resolve_language(code)
            found.append(code)
        except A2KError:
            continue
    return found or COMMON_LANGS


def make_generate(pipeline, out_root: Path):
    """The click handler: checks the inputs, runs the pipeline, returns (video, keypoint file, status line)."""

    def generate(image: str | None, audio: str | None, text: str | None, lang: str | None):
        import gradio as gr

        text = (text or "").strip()
        if not image:
            raise gr.Error("Upload a face image first.")
        if bool(audio) == bool(text):
            raise gr.Error("Give either speech audio (upload or record) or text to speak, not both.")
        out = Path(tempfile.mkdtemp(prefix="a2k-demo-", dir=out_root))
        try:
            result = pipeline(image, audio=audio) if audio else pipeline(image, text=text, lang=lang or None)
            kp, video = out / "keypoints.npz", out / "talking_head.mp4"
            result.save(keypoints=kp, video=video if pipeline.renderer is not None else None)
        except A2KError as exc:  # bad input: show the message (problem and fix), no traceback
            raise gr.Error(str(exc)) from None
        n = len(result.keypoints)
        status = f"{n} frames ({n / result.keypoints.fps:.2f} s at {result.keypoints.fps:g} fps)"
        return (str(video) if video.exists() else None), str(kp), status

    return generate


def build_demo(config: Any = None, pipeline: Any = None, out_root: str | Path | None = None):
    """The Gradio app around one pipeline (built from ``config`` unless given)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # a local demo sends nothing anywhere
    gr = require("gradio", "gradio", "The web demo")
    from a2k_toolkit import Pipeline

    if pipeline is None:
        pipeline = Pipeline.from_config(config)
    root = Path(out_root or tempfile.mkdtemp(prefix="a2k-gradio-"))
    root.mkdir(parents=True, exist_ok=True)
    with gr.Blocks(title="a2k-toolkit demo", analytics_enabled=False) as demo:
        gr.Markdown(f"## {TITLE}\nUpload a face photo, then upload or record speech, or type text and pick a "
                    "language. The result is a 25 fps keypoint video with the speech, and the keypoint file.")
        with gr.Row():
            with gr.Column():
                image = gr.Image(type="filepath", label="Face image", elem_id="face")
                audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Speech audio",
                                 elem_id="speech")  # fmt: skip
                text = gr.Textbox(label="...or text to speak", placeholder="Hello, world.", elem_id="text")
                langs = languages()
                lang = gr.Dropdown(langs, value="en" if "en" in langs else langs[0], label="Language (for text)",
                                   allow_custom_value=True, elem_id="lang")  # fmt: skip
                button = gr.Button("Generate", variant="primary", elem_id="generate")
            with gr.Column():
                video = gr.Video(label="Talking-head keypoints", elem_id="video")
                keypoints = gr.File(label="Keypoint file (.npz)", elem_id="keypoints")
                status = gr.Textbox(label="Status", interactive=False, elem_id="status")
        button.click(make_generate(pipeline, root), [image, audio, text, lang], [video, keypoints, status])
    return demo


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="a2k-gradio", description=TITLE)
    p.add_argument("--config", help="pipeline config file (YAML, JSON or TOML)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 to serve the network)")
    p.add_argument("--port", type=int, default=7860)
    args = p.parse_args(argv)
    try:
        demo = build_demo(args.config)
    except A2KError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    demo.queue().launch(server_name=args.host, server_port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
