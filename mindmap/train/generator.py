"""`mindmap train generator`: the raster (LlamaGen) model on pre-computed VQ codes of emoji."""
from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from ..checkpoint import copy_component, load_component, read_manifest, write_manifest
from ..data import load_emoji
from ..generators.raster import PRESETS, RasterGPT
from ..tokenizers.vq import VQTokenizer
from .common import Trainer, batch_indices, command_line, write_card

logger = logging.getLogger(__name__)


@torch.no_grad()
def encode_all(tokenizer: VQTokenizer, images: torch.Tensor, batch: int = 512) -> torch.Tensor:
    """All images -> flattened codes (N, grid*grid) in raster order."""
    return torch.cat([tokenizer.encode(images[i:i + batch]).flatten(1) for i in range(0, len(images), batch)])


def drop_labels(labels: torch.Tensor, p: float, null: int, g: torch.Generator) -> torch.Tensor:
    """Replace a share `p` of labels by the null class (classifier-free guidance training)."""
    drop = torch.rand(labels.shape, generator=g) < p
    return labels.masked_fill(drop.to(labels.device), null)


@torch.no_grad()
def heldout_nll(model: RasterGPT, codes: torch.Tensor, labels: torch.Tensor, batch: int = 256) -> float:
    """Mean per-code negative log-likelihood (nats) on held-out codes, conditioned on their class."""
    total = 0.0
    for i in range(0, len(codes), batch):
        c, y = codes[i:i + batch], labels[i:i + batch]
        logits = model(c, y)
        total += F.cross_entropy(logits.flatten(0, 1), c.flatten(), reduction="sum").item()
    return total / codes.numel()


def train_generator(out: Path, tokenizer: Path, steps: int = 4000, batch: int = 64, lr: float = 1e-3,
                    preset: str = "small", seed: int = 0, run_dir: Path | None = None, cpu: bool = False) -> dict:
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {list(PRESETS)}, got {preset!r}")
    if tokenizer is None:
        raise ValueError("--tokenizer is required: the tokenizer checkpoint folder the generator models")
    out, tok_dir = Path(out), Path(tokenizer)
    tok_manifest = read_manifest(tok_dir)
    tok = load_component(tok_dir, "tokenizer", VQTokenizer)
    data = load_emoji(tok.config.image_size)
    if data.classes != tok_manifest["classes"]:
        raise ValueError(f"{tok_dir}: its class list differs from the emoji data's; rebuild one of them")
    codes = encode_all(tok, data.tensor())
    labels = torch.from_numpy(data.labels)
    train_idx = torch.from_numpy(data.indices("train"))
    held_idx = torch.from_numpy(data.indices("heldout"))

    torch.manual_seed(seed)
    model = RasterGPT(vocab_size=tok.vocab_size, num_classes=len(data.classes), grid=tok.grid, **PRESETS[preset])
    trainer = Trainer(model, steps, lr, run_dir or Path("runs") / out.name, weight_decay=0.05, cpu=cpu)
    g = torch.Generator().manual_seed(seed + 1)

    def loss_fn(step):
        idx = batch_indices(train_idx, batch, seed, step)
        c, y = codes[idx].to(trainer.device), labels[idx].to(trainer.device)
        y = drop_labels(y, model.config.class_dropout, model.null_class, g)
        logits = trainer.model(c, y)
        loss = F.cross_entropy(logits.flatten(0, 1), c.flatten())
        return loss, {"ce": loss.item()}

    seconds = trainer.run(loss_fn, desc="generator")
    gen = trainer.unwrapped().cpu().eval()
    nll = heldout_nll(gen, codes[held_idx], labels[held_idx])
    train_nll = heldout_nll(gen, codes[train_idx[:len(held_idx)]], labels[train_idx[:len(held_idx)]])
    metrics = {"heldout_nll": nll, "heldout_perplexity": math.exp(nll), "train_nll": train_nll,
               "params": sum(p.numel() for p in gen.parameters())}
    logger.info("metrics: %s", metrics)
    gen.save_pretrained(out / "generator", safe_serialization=True)
    copy_component(tok_dir / "tokenizer", out / "tokenizer")
    write_manifest(out, {"kind": "generator", "paradigm": "raster", "conditioning": "class",
                         "components": {"tokenizer": "tokenizer", "generator": "generator"},
                         "tokenizer_source": tok_dir.name, "image_size": tok.config.image_size,
                         "grid": tok.grid, "classes": data.classes, "metrics": metrics})
    write_card(out, f"{out.name}: raster next-token generator (LlamaGen recipe)",
               f"Causal LLaMA ({metrics['params'] / 1e6:.2f}M parameters, preset `{preset}`: "
               f"{PRESETS[preset]}) over the {tok.grid}x{tok.grid} codes of the `{tok_dir.name}` tokenizer "
               "(copied into `tokenizer/`), class as a prefix token, 2D RoPE, label dropout "
               f"{model.config.class_dropout} for classifier-free guidance.",
               command_line(), steps, seconds,
               {"held-out NLL (nats/code)": nll, "held-out perplexity": math.exp(nll),
                "train NLL (nats/code, same count)": train_nll, "parameters": metrics["params"]})
    return metrics
