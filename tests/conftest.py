"""Shared fixtures: a tiny random raster checkpoint so pipeline/CLI tests run in seconds on CPU."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mindmap.checkpoint import write_manifest  # noqa: E402
from mindmap.generators.raster import PRESETS, RasterGPT  # noqa: E402
from mindmap.tokenizers.vq import VQTokenizer  # noqa: E402

TINY_CLASSES = ["face-smiling", "animal-mammal", "food-fruit"]


def tiny_tokenizer(seed: int = 0) -> VQTokenizer:
    torch.manual_seed(seed)
    return VQTokenizer(image_size=16, block_out_channels=(8, 16), latent_channels=16, norm_num_groups=4,
                       codebook_size=32, code_dim=4).eval()


def tiny_raster(seed: int = 0, grid: int = 8) -> RasterGPT:
    torch.manual_seed(seed)
    return RasterGPT(vocab_size=32, num_classes=len(TINY_CLASSES), grid=grid, **PRESETS["tiny"]).eval()


def write_tiny_checkpoint(folder: Path) -> Path:
    tiny_tokenizer().save_pretrained(folder / "tokenizer", safe_serialization=True)
    tiny_raster().save_pretrained(folder / "generator", safe_serialization=True)
    write_manifest(folder, {"kind": "generator", "paradigm": "raster", "conditioning": "class",
                            "components": {"tokenizer": "tokenizer", "generator": "generator"},
                            "image_size": 16, "grid": 8, "classes": TINY_CLASSES})
    return folder


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """A checkpoints root holding one tiny raster model, `tiny-raster`."""
    root = tmp_path_factory.mktemp("checkpoints")
    write_tiny_checkpoint(root / "tiny-raster")
    return root


@pytest.fixture(scope="session")
def tiny_pipe(tiny_root):
    from mindmap.pipeline import Pipeline
    return Pipeline.from_pretrained(tiny_root / "tiny-raster", device="cpu")
