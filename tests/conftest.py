"""Shared fixtures: tiny random checkpoints (raster, masked, hybrid) so pipeline/CLI tests run in seconds on CPU."""
from __future__ import annotations

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
from mindmap.generators.mar import MARGPT  # noqa: E402
from mindmap.generators.scale import ScaleGPT  # noqa: E402
from mindmap.generators.stack import StackGPT  # noqa: E402
from mindmap.tokenizers.kl import KLTokenizer  # noqa: E402
from mindmap.tokenizers.mq import MQTokenizer  # noqa: E402
from mindmap.tokenizers.msvq import MSVQTokenizer  # noqa: E402
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


def tiny_mq_tokenizer(seed: int = 0) -> MQTokenizer:
    torch.manual_seed(seed)
    return MQTokenizer(image_size=16, block_out_channels=(8, 16), latent_channels=16, norm_num_groups=4,
                       codebook_size=32, code_dim=4, demask_width=16, demask_layers=2, demask_heads=2).eval()


def tiny_stack(seed: int = 0) -> StackGPT:
    torch.manual_seed(seed)
    return StackGPT(vocab_size=32, num_classes=len(TINY_CLASSES), grid=8, dim=64, n_layers=2, position_layers=1,
                    n_heads=4, min_count=16).eval()


def tiny_msvq_tokenizer(seed: int = 0) -> MSVQTokenizer:
    torch.manual_seed(seed)
    return MSVQTokenizer(image_size=16, block_out_channels=(8, 16), latent_channels=16, norm_num_groups=4,
                         codebook_size=32, code_dim=4).eval()


def tiny_scale(seed: int = 0) -> ScaleGPT:
    torch.manual_seed(seed)
    return ScaleGPT(vocab_size=32, num_classes=len(TINY_CLASSES), scales=(1, 2, 3, 4, 5, 6, 8), code_dim=4, dim=64,
                    n_layers=2, n_heads=4, grid=8).eval()


def tiny_kl_tokenizer(seed: int = 0) -> KLTokenizer:
    torch.manual_seed(seed)
    return KLTokenizer(down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                       block_out_channels=(8, 16), latent_channels=4, norm_num_groups=4, sample_size=16).eval()


def tiny_mar(seed: int = 0) -> MARGPT:
    torch.manual_seed(seed)
    return MARGPT(token_dim=4, num_classes=len(TINY_CLASSES), grid=8, dim=64, n_layers=2, n_heads=4, head_width=64,
                  head_blocks=2).eval()


def write_tiny_pair(folder: Path, paradigm: str, tokenizer, generator) -> Path:
    tokenizer.save_pretrained(folder / "tokenizer", safe_serialization=True)
    generator.save_pretrained(folder / "generator", safe_serialization=True)
    write_manifest(folder, {"kind": "generator", "paradigm": paradigm, "conditioning": "class",
                            "components": {"tokenizer": "tokenizer", "generator": "generator"},
                            "image_size": 16, "grid": 8, "classes": TINY_CLASSES})
    return folder


def tiny_masked(seed: int = 0, grid: int = 8) -> MaskedGPT:
    torch.manual_seed(seed)
    return MaskedGPT(vocab_size=32, num_classes=len(TINY_CLASSES), grid=grid, **PRESETS["tiny"]).eval()


def write_tiny_checkpoint(folder: Path, paradigm: str = "raster", conditioning: str = "class") -> Path:
    tiny_tokenizer().save_pretrained(folder / "tokenizer", safe_serialization=True)
    torch.manual_seed(0)
    cls = RasterGPT if paradigm == "raster" else MaskedGPT
    generator = cls(vocab_size=32, num_classes=len(TINY_CLASSES), grid=8, conditioning=conditioning, text_tokens=8,
                    **PRESETS["tiny"]).eval()
    generator.save_pretrained(folder / "generator", safe_serialization=True)
    extra = {"example_prompts": ["red apple", "grinning face"]} if conditioning == "text" else {}
    write_manifest(folder, {"kind": "generator", "paradigm": paradigm, "conditioning": conditioning,
                            "components": {"tokenizer": "tokenizer", "generator": "generator"},
                            "image_size": 16, "grid": 8, "classes": TINY_CLASSES, **extra})
    return folder


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """A checkpoints root: `tiny-raster`, `tiny-masked`, `tiny-hybrid` (made of those two), `tiny-depth`, `tiny-mq`,
    and tokenizer-only folders `tiny-vq`, `tiny-rq`, `tiny-mqvae` for the lab."""
    root = tmp_path_factory.mktemp("checkpoints")
    write_tiny_checkpoint(root / "tiny-raster")
    write_tiny_checkpoint(root / "tiny-masked", "masked")
    write_tiny_checkpoint(root / "tiny-text", "raster", "text")
    compose_hybrid(root / "tiny-hybrid", raster=root / "tiny-raster", masked=root / "tiny-masked")
    write_tiny_pair(root / "tiny-depth", "depth", tiny_rq_tokenizer(), tiny_depth())
    write_tiny_pair(root / "tiny-mq", "mq", tiny_mq_tokenizer(), tiny_stack())
    write_tiny_pair(root / "tiny-scale", "scale", tiny_msvq_tokenizer(), tiny_scale())
    write_tiny_pair(root / "tiny-mar", "mar", tiny_kl_tokenizer(), tiny_mar())
    for kind, make, name in (("vq", tiny_tokenizer, "tiny-vq"), ("rq", tiny_rq_tokenizer, "tiny-rq"),
                             ("mq", tiny_mq_tokenizer, "tiny-mqvae"), ("msvq", tiny_msvq_tokenizer, "tiny-msvq"), ("kl", tiny_kl_tokenizer, "tiny-kl")):
        # tokenizer-only folders: the lab
        make().save_pretrained(root / name / "tokenizer", safe_serialization=True)
        write_manifest(root / name, {"kind": "tokenizer", "tokenizer": kind,
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
def mq_pipe(tiny_root):
    from mindmap.pipeline import Pipeline
    return Pipeline.from_pretrained(tiny_root / "tiny-mq", device="cpu")


@pytest.fixture(scope="session")
def scale_pipe(tiny_root):
    from mindmap.pipeline import Pipeline
    return Pipeline.from_pretrained(tiny_root / "tiny-scale", device="cpu")


@pytest.fixture(scope="session")
def mar_pipe(tiny_root):
    from mindmap.pipeline import Pipeline
    return Pipeline.from_pretrained(tiny_root / "tiny-mar", device="cpu")


@pytest.fixture(scope="session")
def text_pipe(tiny_root):
    from mindmap.pipeline import Pipeline
    return Pipeline.from_pretrained(tiny_root / "tiny-text", device="cpu")


@pytest.fixture(scope="session")
def hybrid_pipe(tiny_root):
    from mindmap.pipeline import Pipeline
    return Pipeline.from_pretrained(tiny_root / "tiny-hybrid", device="cpu")
