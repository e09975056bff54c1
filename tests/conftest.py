"""Shared fixtures: a root of tiny random checkpoints, one of every paradigm (class and text conditioned), and
one factory (`pipes`) that loads any of them, so pipeline/CLI/app tests run in seconds on CPU."""
from __future__ import annotations

import atexit
import functools
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Published models a developer fetched stay out of the tests: the registry's second root is an empty folder.
os.environ["MINDMAP_MODELS"] = tempfile.mkdtemp(prefix="mindmap-models-")
atexit.register(shutil.rmtree, os.environ["MINDMAP_MODELS"], True)
# The app's tests count previews: every one is sent (the bounded frame rate has a test of its own).
os.environ["MINDMAP_PREVIEW_INTERVAL"] = "0"

from mindmap.checkpoint import write_manifest  # noqa: E402
from mindmap.generators.base import PRESETS  # noqa: E402
from mindmap.generators.depth import DepthGPT  # noqa: E402
from mindmap.generators.mar import MARGPT  # noqa: E402
from mindmap.generators.masked import MaskedGPT  # noqa: E402
from mindmap.generators.raster import RasterGPT  # noqa: E402
from mindmap.generators.scale import ScaleGPT  # noqa: E402
from mindmap.generators.stack import StackGPT  # noqa: E402
from mindmap.tokenizers.kl import KLTokenizer  # noqa: E402
from mindmap.tokenizers.mq import MQTokenizer  # noqa: E402
from mindmap.tokenizers.msvq import MSVQTokenizer  # noqa: E402
from mindmap.tokenizers.rq import RQTokenizer  # noqa: E402
from mindmap.tokenizers.vq import VQTokenizer  # noqa: E402
from mindmap.train.hybrid import compose_hybrid  # noqa: E402

TINY_CLASSES = ["face-smiling", "animal-mammal", "food-fruit"]
EXAMPLE_PROMPTS = ["red apple", "grinning face"]
# 16 px images on an 8x8 grid, a codebook of 32 codes of 4 dims.
CONV = dict(image_size=16, block_out_channels=(8, 16), latent_channels=16, norm_num_groups=4, codebook_size=32,
            code_dim=4)
GRID = dict(num_classes=len(TINY_CLASSES), grid=8)


def seeded(cls, seed: int = 0, **kwargs):
    """A model with weights drawn from `seed`, in eval mode."""
    torch.manual_seed(seed)
    return cls(**kwargs).eval()


def tiny_tokenizer(seed: int = 0) -> VQTokenizer:
    return seeded(VQTokenizer, seed, **CONV)


def tiny_rq_tokenizer(seed: int = 0) -> RQTokenizer:
    return seeded(RQTokenizer, seed, **CONV, depth=3)


def tiny_mq_tokenizer(seed: int = 0) -> MQTokenizer:
    return seeded(MQTokenizer, seed, **CONV, demask_width=16, demask_layers=2, demask_heads=2)


def tiny_msvq_tokenizer(seed: int = 0) -> MSVQTokenizer:
    return seeded(MSVQTokenizer, seed, **CONV)


def tiny_kl_tokenizer(seed: int = 0) -> KLTokenizer:
    return seeded(KLTokenizer, seed, down_block_types=("DownEncoderBlock2D",) * 2,
                  up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), latent_channels=4,
                  norm_num_groups=4, sample_size=16)


def tiny_raster(seed: int = 0, **kwargs) -> RasterGPT:
    return seeded(RasterGPT, seed, vocab_size=32, **GRID, **PRESETS["tiny"], **kwargs)


def tiny_masked(seed: int = 0, **kwargs) -> MaskedGPT:
    return seeded(MaskedGPT, seed, vocab_size=32, **GRID, **PRESETS["tiny"], **kwargs)


def tiny_depth(seed: int = 0, **kwargs) -> DepthGPT:
    return seeded(DepthGPT, seed, vocab_size=32, **GRID, depth=3, dim=64, n_layers=4, n_heads=4, head_layers=(2, 3, 4),
                  **kwargs)


def tiny_stack(seed: int = 0, **kwargs) -> StackGPT:
    return seeded(StackGPT, seed, vocab_size=32, **GRID, dim=64, n_layers=2, position_layers=1, n_heads=4, min_count=16,
                  **kwargs)


def tiny_scale(seed: int = 0, **kwargs) -> ScaleGPT:
    return seeded(ScaleGPT, seed, vocab_size=32, num_classes=len(TINY_CLASSES), scales=(1, 2, 3, 4, 5, 6, 8), code_dim=4,
                  dim=64, n_layers=2, n_heads=4, grid=8, **kwargs)


def tiny_mar(seed: int = 0, **kwargs) -> MARGPT:
    return seeded(MARGPT, seed, token_dim=4, **GRID, dim=64, n_layers=2, n_heads=4, head_width=64, head_blocks=2,
                  **kwargs)


def write_tiny_pair(folder: Path, paradigm: str, tokenizer, generator, conditioning: str = "class",
                    styles: list[str] | None = None) -> Path:
    """A generator checkpoint folder: tokenizer + generator + manifest (text models list example prompts; `styles`:
    the generator's style condition)."""
    tokenizer.save_pretrained(folder / "tokenizer", safe_serialization=True)
    generator.save_pretrained(folder / "generator", safe_serialization=True)
    extra = {"example_prompts": EXAMPLE_PROMPTS} if conditioning == "text" else {}
    if styles:
        extra.update(styles=styles, style_condition=True)
    write_manifest(folder, {"kind": "generator", "paradigm": paradigm, "conditioning": conditioning,
                            "components": {"tokenizer": "tokenizer", "generator": "generator"},
                            "image_size": 16, "grid": 8, "classes": TINY_CLASSES, **extra})
    return folder


def write_tiny_checkpoint(folder: Path, paradigm: str = "raster", conditioning: str = "class") -> Path:
    """A raster or masked checkpoint on `tiny_tokenizer`, class or text conditioned."""
    make = tiny_raster if paradigm == "raster" else tiny_masked
    text = {"conditioning": "text", "text_tokens": 8} if conditioning == "text" else {}
    return write_tiny_pair(folder, paradigm, tiny_tokenizer(), make(**text), conditioning)


def write_tiny_tokenizer(folder: Path, kind: str, tokenizer) -> Path:
    """A tokenizer-only folder (the tokenizer lab's)."""
    tokenizer.save_pretrained(folder / "tokenizer", safe_serialization=True)
    write_manifest(folder, {"kind": "tokenizer", "tokenizer": kind, "components": {"tokenizer": "tokenizer"},
                            "image_size": 16, "grid": 8, "classes": TINY_CLASSES})
    return folder


@pytest.fixture(scope="session", autouse=True)
def client_temp(tmp_path_factory) -> Path:
    """The tests' gradio_client downloads (`Client(url, download_files=tempfile.gettempdir())`) and the temp files
    of the whole session go in one folder, deleted at the end (`client_downloads`); pytest's own folders stay put."""
    from mindmap.serve import client_downloads
    tmp_path_factory.getbasetemp()                 # fixed before the temp folder moves
    with client_downloads() as folder:
        yield folder


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """A checkpoints root: one tiny model of every paradigm (`tiny-raster`, `tiny-masked`, `tiny-hybrid` made of those
    two, `tiny-depth`, `tiny-mq`, `tiny-scale`, `tiny-mar`), text models (`tiny-text` raster, `tiny-text-masked`,
    `tiny-text-hybrid`), and tokenizer-only folders for the lab (`tiny-vq`, `tiny-rq`, `tiny-mqvae`, `tiny-msvq`,
    `tiny-kl`)."""
    root = tmp_path_factory.mktemp("checkpoints")
    write_tiny_checkpoint(root / "tiny-raster")
    write_tiny_checkpoint(root / "tiny-masked", "masked")
    write_tiny_checkpoint(root / "tiny-text", "raster", "text")
    write_tiny_checkpoint(root / "tiny-text-masked", "masked", "text")
    compose_hybrid(root / "tiny-hybrid", raster=root / "tiny-raster", masked=root / "tiny-masked")
    compose_hybrid(root / "tiny-text-hybrid", raster=root / "tiny-text", masked=root / "tiny-text-masked")
    write_tiny_pair(root / "tiny-depth", "depth", tiny_rq_tokenizer(), tiny_depth())
    write_tiny_pair(root / "tiny-mq", "mq", tiny_mq_tokenizer(), tiny_stack())
    write_tiny_pair(root / "tiny-scale", "scale", tiny_msvq_tokenizer(), tiny_scale())
    write_tiny_pair(root / "tiny-mar", "mar", tiny_kl_tokenizer(), tiny_mar())
    for kind, make, name in (("vq", tiny_tokenizer, "tiny-vq"), ("rq", tiny_rq_tokenizer, "tiny-rq"),
                             ("mq", tiny_mq_tokenizer, "tiny-mqvae"), ("msvq", tiny_msvq_tokenizer, "tiny-msvq"),
                             ("kl", tiny_kl_tokenizer, "tiny-kl")):
        write_tiny_tokenizer(root / name, kind, make())
    return root


@pytest.fixture(scope="session")
def pipes(tiny_root):
    """`pipes("tiny-masked")`: the pipeline of a tiny checkpoint on the CPU, loaded once per session."""
    from mindmap.pipeline import Pipeline

    @functools.lru_cache(maxsize=None)
    def load(name: str) -> Pipeline:
        return Pipeline.from_pretrained(tiny_root / name, device="cpu")
    return load
