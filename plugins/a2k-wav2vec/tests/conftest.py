"""Tiny randomly initialised wav2vec 2.0 and HuBERT models, saved with save_pretrained to temp dirs.

They run the real transformers model classes end to end; only their sizes are small (no hub download).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

transformers = pytest.importorskip("transformers")

if importlib.util.find_spec("a2k_wav2vec") is None:  # running from a checkout without `pip install -e`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SAMPLES = Path(__import__("a2k_toolkit").__file__).parent / "samples"


def save_tiny_model(path: Path, kind: str = "wav2vec2", *, stable: bool = False, layers: int = 3, seed: int = 0):
    import torch

    cfg_cls, model_cls = {
        "wav2vec2": (transformers.Wav2Vec2Config, transformers.Wav2Vec2Model),
        "hubert": (transformers.HubertConfig, transformers.HubertModel),
    }[kind]
    cfg = cfg_cls(
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=37,
        conv_dim=(16,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        do_stable_layer_norm=stable,
        feat_extract_norm="layer" if stable else "group",
        vocab_size=10,
    )
    torch.manual_seed(seed)
    model_cls(cfg).eval().save_pretrained(path)  # safetensors
    transformers.Wav2Vec2FeatureExtractor(do_normalize=True, sampling_rate=16000).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_wav2vec2(tmp_path_factory) -> Path:
    """wav2vec 2.0 base-style (post-LN, GroupNorm conv), 3 blocks."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny-wav2vec2"), "wav2vec2")


@pytest.fixture(scope="session")
def tiny_hubert(tmp_path_factory) -> Path:
    """HuBERT large-style (stable layer norm, LayerNorm conv), 3 blocks."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny-hubert"), "hubert", stable=True)


@pytest.fixture(scope="session")
def speech():
    from a2k_toolkit.audio import load_audio

    return load_audio(SAMPLES / "speech.wav", 16000)


@pytest.fixture(scope="session")
def sample_image_path() -> Path:
    return SAMPLES / "astronaut.jpg"
