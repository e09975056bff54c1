"""Shared fixtures: tiny random checkpoints (raster, masked, hybrid) so pipeline/CLI tests run in seconds on CPU."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mindmap.checkpoint import write_manifest  # noqa: E402
from mindmap.generators import depth as depth_gen  # noqa: E402
from mindmap.generators.base import PRESETS  # noqa: E402
from mindmap.generators.masked import MaskedGPT  # noqa: E402
from mindmap.generators.raster import RasterGPT  # noqa: E402
from mindmap.train.hybrid import compose_hybrid  # noqa: E402
from mindmap.tokenizers.rq import RQTokenizer  # noqa: E402
from mindmap.tokenizers.vq import VQTokenizer  # noqa: E402

TINY_CLASSES = ["face-smiling", "animal-mammal", "food-fruit"]


def tiny_tokenizer(seed: int = 0) -> VQTokenizer:
    torch.manual_seed(seed)
    return VQTokenizer(image_size=16, block_out_channels=(8, 16), latent_channels=16, norm_num_groups=4,
                       codebook_size=32, code_dim=4).eval()


def tiny_raster(seed: int = 0, grid: int = 8) -> RasterGPT:
    torch.manual_seed(seed)
    return RasterGPT(vocab_size=32, num_classes=len(TINY_CLASSES), grid=grid, **PRESETS["tiny"]).eval()


def tiny_rq_tokenizer(seed: int = 0) -> RQTokenizer:
    torch.manual_seed(seed)
    return RQTokenizer(image_size=16, block_out_channels=(8, 16), latent_channels=16, norm_num_groups=4,
                       codebook_size=32, code_dim=4, depth=3).eval()


def tiny_depth(seed: int = 0) -> depth_gen.DepthGPT:
    torch.manual_seed(seed)
    return depth_gen.DepthGPT(vocab_size=32, num_classes=len(TINY_CLASSES), grid=8, depth=3, dim=64, n_layers=4,
                              n_heads=4, head_layers=(2, 3, 4)).eval()


def write_tiny_depth(folder: Path) -> Path:
    tiny_rq_tokenizer().save_pretrained(folder / "tokenizer", safe_serialization=True)
    tiny_depth().save_pretrained(folder / "generator", safe_serialization=True)
    write_manifest(folder, {"kind": "generator", "paradigm": "depth", "conditioning": "class",
                            "components": {"tokenizer": "tokenizer", "generator": "generator"},
                            "image_size": 16, "grid": 8, "classes": TINY_CLASSES})
    return folder


def tiny_masked(seed: int = 0, grid: int = 8) -> MaskedGPT:
    torch.manual_seed(seed)
    return MaskedGPT(vocab_size=32, num_classes=len(TINY_CLASSES), grid=grid, **PRESETS["tiny"]).eval()


def write_tiny_checkpoint(folder: Path, paradigm: str = "raster") -> Path:
    tiny_tokenizer().save_pretrained(folder / "tokenizer", safe_serialization=True)
    generator = tiny_raster() if paradigm == "raster" else tiny_masked()
    generator.save_pretrained(folder / "generator", safe_serialization=True)
    write_manifest(folder, {"kind": "generator", "paradigm": paradigm, "conditioning": "class",
                            "components": {"tokenizer": "tokenizer", "generator": "generator"},
                            "image_size": 16, "grid": 8, "classes": TINY_CLASSES})
    return folder


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """A checkpoints root: `tiny-raster`, `tiny-masked`, `tiny-hybrid` (made of those two), `tiny-depth`."""
    root = tmp_path_factory.mktemp("checkpoints")
    write_tiny_checkpoint(root / "tiny-raster")
    write_tiny_checkpoint(root / "tiny-masked", "masked")
    compose_hybrid(root / "tiny-hybrid", raster=root / "tiny-raster", masked=root / "tiny-masked")
    write_tiny_depth(root / "tiny-depth")
    for kind, make in (("vq", tiny_tokenizer), ("rq", tiny_rq_tokenizer)):  # tokenizer-only folders (the lab)
        make().save_pretrained(root / f"tiny-{kind}" / "tokenizer", safe_serialization=True)
        write_manifest(root / f"tiny-{kind}", {"kind": "tokenizer", "tokenizer": kind,
                                              "components": {"tokenizer": "tokenizer"}, "image_size": 16, "grid": 8,
                                              "classes": TINY_CLASSES})
    return root


@pytest.fixture(scope="session")
def tiny_pipe(tiny_root):
    from mindmap.pipeline import Pipeline
    return Pipeline.from_pretrained(tiny_root / "tiny-raster", device="cpu")


@pytest.fixture(scope="session")
def masked_pipe(tiny_root):
    from mindmap.pipeline import Pipeline
    return Pipeline.from_pretrained(tiny_root / "tiny-masked", device="cpu")


@pytest.fixture(scope="session")
def depth_pipe(tiny_root):
    from mindmap.pipeline import Pipeline
    return Pipeline.from_pretrained(tiny_root / "tiny-depth", device="cpu")


@pytest.fixture(scope="session")
def hybrid_pipe(tiny_root):
    from mindmap.pipeline import Pipeline
    return Pipeline.from_pretrained(tiny_root / "tiny-hybrid", device="cpu")
