"""`mindmap train generator`: a raster (LlamaGen) or masked (MaskGIT) model on pre-computed VQ codes of emoji."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from ..checkpoint import copy_component, load_component, read_manifest, save_component, write_manifest
from ..data import load_emoji
from ..generators import depth as depth_gen
from ..generators.base import PRESETS
from ..generators.mar import PRESETS as MAR_PRESETS
from ..generators.mar import MARGPT, mar_loss
from ..generators.masked import MaskedGPT, masked_loss
from ..generators.raster import RasterGPT
from ..generators.stack import PRESETS as STACK_PRESETS
from ..generators.scale import PRESETS as SCALE_PRESETS
from ..generators.scale import ScaleGPT, scale_loss
from ..generators.stack import StackGPT, stack_loss
from ..tokenizers import TOKENIZERS
from .captions import CaptionTable
from .common import Trainer, batch_indices, command_line, write_card

logger = logging.getLogger(__name__)


def token_codes(tokenizer, images: torch.Tensor) -> torch.Tensor:
    """Images -> flattened codes (B, grid*grid[*depth]) in raster order (a cell's depths together)."""
    return tokenizer.encode(images).flatten(1)


def cell_codes_and_scores(tokenizer, images: torch.Tensor) -> torch.Tensor:
    """MQ: every cell's code and importance score, (B, N, 2) float; the kept set is chosen per training row."""
    codes, scores = tokenizer.encode_all(images)
    return torch.stack([codes.flatten(1).float(), scores.flatten(1)], dim=-1)


@torch.no_grad()
def encode_all(tokenizer, images: torch.Tensor, encode=token_codes, batch: int = 512) -> torch.Tensor:
    return torch.cat([encode(tokenizer, images[i:i + batch]) for i in range(0, len(images), batch)])


def drop_labels(labels: torch.Tensor, p: float, null: int, g: torch.Generator) -> torch.Tensor:
    """Replace a share `p` of labels by the null class (classifier-free guidance training)."""
    drop = torch.rand(labels.shape, generator=g) < p
    return labels.masked_fill(drop.to(labels.device), null)


def raster_loss(model: RasterGPT, codes: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Teacher forcing: cross-entropy of every code given the class and the codes before it."""
    return F.cross_entropy(model(codes, labels).flatten(0, 1), codes.flatten())


def pyramid_codes_and_inputs(tokenizer, images: torch.Tensor) -> torch.Tensor:
    """VAR: the pyramid's codes (B, L) and the next-scale inputs (B, (L-1) * C), side by side as floats."""
    codes = tokenizer.encode(images)
    flat = torch.cat([c.flatten(1) for c in codes], dim=1).float()
    return torch.cat([flat, tokenizer.teacher_inputs(codes).flatten(1)], dim=1)


def var_loss(model, batch: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    codes, inputs = batch[:, :model.length].long(), batch[:, model.length:]
    return scale_loss(model, codes, inputs.view(len(batch), model.length - 1, -1), labels)


def continuous_tokens(tokenizer, images: torch.Tensor) -> torch.Tensor:
    """MAR: the KL autoencoder's scaled latent tokens (B, N, C)."""
    return tokenizer.tokens(images)


def mq_loss(model, batch: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Stackformer on a random kept count per row, K ~ U{min_count .. N} (the mask ratio range it serves)."""
    counts = torch.randint(model.config.min_count, model.cells + 1, (len(batch),), generator=generator)
    return stack_loss(model, batch[..., 0].long(), batch[..., 1], labels, counts.to(batch.device))


@dataclass(frozen=True)
class Recipe:
    model: type
    presets: dict
    loss: Callable                       # (model, batch of codes, labels, generator) -> loss
    title: str                           # the model card's title
    summary: str                         # what the card says of the model
    encode: Callable = token_codes       # (tokenizer, images) -> what `loss` trains on
    needs: str = "vq"                    # the tokenizer kind it models
    extra: Callable = lambda tok: {}     # model arguments that come from the tokenizer
    metric: str = "CE (nats/code)"       # what `loss` measures, for the model card


GENERATORS = {
    "raster": Recipe(RasterGPT, PRESETS, raster_loss, "raster next-token generator (LlamaGen recipe)",
                     "Causal LLaMA, class as a prefix token, 2D RoPE, trained by teacher forcing"),
    "masked": Recipe(MaskedGPT, PRESETS, masked_loss, "masked parallel generator (MaskGIT recipe)",
                     "Bidirectional LLaMA with a [MASK] code, class as a prefix token, 2D RoPE, trained with the "
                     "MaskGIT objective (cosine share of cells masked per sequence, loss on masked cells)"),
    "depth": Recipe(depth_gen.DepthGPT, depth_gen.PRESETS, depth_gen.depth_loss,
                    "residual-depth generator (DnD-Transformer recipe)",
                    "Causal LLaMA over cells with one head per residual depth at intermediate layers; each sampled "
                    "code's embedding is added to the hidden state before the next head; the next cell's input is "
                    "the sum of its codes' embeddings. Teacher forcing with CE summed over heads, depth truncated at "
                    "random (half the rows at full depth) so every depth control value is in-distribution",
                    needs="rq", extra=lambda tok: {"depth": tok.config["depth"]}),
    "mq": Recipe(StackGPT, STACK_PRESETS, mq_loss, "Stackformer generator (MQ-VAE recipe)",
                 "A causal code transformer predicts the next kept cell's code; a position transformer stacked on "
                 "it predicts that code's cell (raster order, used and too-late cells banned). The start token "
                 "carries the class and K, the kept count; trained on K drawn over the tokenizer's mask-ratio range "
                 "with code CE + position CE", encode=cell_codes_and_scores, needs="mq",
                 extra=lambda tok: {"min_count": max(1, round((1 - tok.config["max_mask_ratio"]) * tok.grid ** 2))}),
    "scale": Recipe(ScaleGPT, SCALE_PRESETS, var_loss, "next-scale generator (VAR recipe)",
                    "Block-causal transformer over the multi-scale pyramid: the class as the start token and through "
                    "AdaLN in every block, learned position and level embeddings, the next scale's input being the "
                    "running sum of the coarser scales down-sampled to it; CE over every code of the pyramid",
                    encode=pyramid_codes_and_inputs, needs="msvq",
                    extra=lambda tok: {"scales": tok.scales, "code_dim": tok.config.code_dim}),
    "mar": Recipe(MARGPT, MAR_PRESETS, mar_loss, "continuous-token generator with a diffusion head (MAR recipe)",
                  "Bidirectional transformer over the KL autoencoder's continuous tokens (unrevealed ones replaced by "
                  "a learned mask vector, class as a prefix token, 2D RoPE) giving each cell a condition z; a small "
                  "MLP with AdaLN on z and the timestep predicts the noise of a noised token (DDPM noise-prediction "
                  "loss, cosine betas, each masked token's loss repeated 4 times); cells masked at the cosine "
                  "schedule's share, as the sampler reveals them", encode=continuous_tokens, needs="kl",
                  extra=lambda tok: {"token_dim": tok.token_dim}, metric="noise-prediction MSE"),
}


class ClassConditions:
    """Class labels; in training a share `p` become the null class (classifier-free guidance)."""

    def __init__(self, labels: torch.Tensor, model):
        self.labels, self.model = labels, model

    def train(self, rows: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return drop_labels(self.labels[rows], self.model.config.class_dropout, self.model.null_class, g)

    def eval(self, rows: torch.Tensor) -> torch.Tensor:
        return self.labels[rows]


class TextConditions:
    """Captions of each emoji (name, variations, short names); in training a share `p` become the empty prompt."""

    def __init__(self, records: list[dict], model):
        from ..text import text_encoder
        self.table, self.model = CaptionTable(records, text_encoder(model.config.text_tokens)), model

    def train(self, rows: torch.Tensor, g: torch.Generator):
        return self.table.condition(rows, g).drop(self.model.config.class_dropout, g)

    def eval(self, rows: torch.Tensor):
        return self.table.condition(rows)


@torch.no_grad()
def heldout_loss(model, loss, codes: torch.Tensor, rows: torch.Tensor, conds, seed: int = 0, batch: int = 256) -> float:
    """Mean of `loss` over records `rows` (their codes, their plain condition), with fixed random draws."""
    g, total = torch.Generator().manual_seed(seed), 0.0
    for part in rows.split(batch):
        total += loss(model, codes[part], conds.eval(part), g).item() * len(part)
    return total / len(rows)


def load_codes(tok_dir: Path, flip: bool, encode=token_codes):
    """The tokenizer, the emoji data and its codes: (tok, data, views (V, M, ...), labels (M,))."""
    tok_manifest = read_manifest(tok_dir)
    tok = load_component(tok_dir, "tokenizer", TOKENIZERS[tok_manifest.get("tokenizer", "vq")])
    data = load_emoji(tok.image_size)
    if data.classes != tok_manifest["classes"]:
        raise ValueError(f"{tok_dir}: its class list differs from the emoji data's; rebuild one of them")
    images = data.tensor()
    codes = encode_all(tok, images, encode)
    # Mirrored emoji are still emoji of their class: twice the code sequences, much less memorisation.
    views = torch.stack([codes, encode_all(tok, images.flip(-1), encode)]) if flip else codes[None]
    return tok, data, views, torch.from_numpy(data.labels)


def train_generator(out: Path, tokenizer: Path, paradigm: str = "raster", steps: int = 4000, batch: int = 64,
                    lr: float = 1e-3, preset: str = "small", dropout: float = 0.1, flip: bool = True, seed: int = 0,
                    conditioning: str = "class", run_dir: Path | None = None, cpu: bool = False,
                    init: Path | None = None) -> dict:
    if paradigm not in GENERATORS:
        raise ValueError(f"paradigm must be one of {list(GENERATORS)}, got {paradigm!r}")
    recipe = GENERATORS[paradigm]
    if preset not in recipe.presets:
        raise ValueError(f"preset must be one of {list(recipe.presets)}, got {preset!r}")
    if conditioning not in ("class", "text") or (conditioning == "text" and paradigm not in ("raster", "masked")):
        raise ValueError(f"conditioning must be 'class' (any paradigm) or 'text' (raster, masked), got "
                         f"{conditioning!r} for {paradigm}")
    if tokenizer is None:
        raise ValueError("--tokenizer is required: the tokenizer checkpoint folder the generator models")
    out, tok_dir = Path(out), Path(tokenizer)
    kind = read_manifest(tok_dir).get("tokenizer", "vq")
    if kind != recipe.needs:
        raise ValueError(f"{tok_dir}: a {paradigm} generator models a {recipe.needs} tokenizer, this one is {kind}")
    tok, data, views, labels = load_codes(tok_dir, flip, recipe.encode)
    train_idx = torch.from_numpy(data.indices("train"))
    held_idx = torch.from_numpy(data.indices("heldout"))

    torch.manual_seed(seed)
    alphabet = {"vocab_size": tok.vocab_size} if hasattr(tok, "vocab_size") else {}
    text = {"conditioning": "text"} if conditioning == "text" else {}
    model = recipe.model(num_classes=len(data.classes), grid=tok.grid, dropout=dropout, **alphabet, **text,
                         **recipe.extra(tok), **recipe.presets[preset])
    warm = warm_start(model, Path(init), recipe.model, paradigm) if init is not None else None
    conds = TextConditions(data.records, model) if text else ClassConditions(labels, model)
    trainer = Trainer(model, steps, lr, run_dir or Path("runs") / out.name, weight_decay=0.05, cpu=cpu)
    g = torch.Generator().manual_seed(seed + 1)

    def loss_fn(step):
        idx = batch_indices(train_idx, batch, seed, step)
        view = torch.randint(0, len(views), (batch,), generator=g)
        cond = conds.train(idx, g).to(trainer.device)
        value = recipe.loss(trainer.model, views[view, idx].to(trainer.device), cond, g)
        return value, {"loss": value.item()}

    seconds = trainer.run(loss_fn, desc=f"{paradigm} generator")
    gen = trainer.unwrapped().cpu().eval()
    metrics = {"heldout_ce": heldout_loss(gen, recipe.loss, views[0], held_idx, conds),
               "train_ce": heldout_loss(gen, recipe.loss, views[0], train_idx[:len(held_idx)], conds),
               "params": sum(p.numel() for p in gen.parameters())}
    logger.info("metrics: %s", metrics)
    save_component(gen, out / "generator", half=True)
    copy_component(tok_dir / "tokenizer", out / "tokenizer")
    write_manifest(out, {"kind": "generator", "paradigm": paradigm, "conditioning": conditioning,
                         "components": {"tokenizer": "tokenizer", "generator": "generator"},
                         "tokenizer_source": tok_dir.name, "image_size": tok.image_size, "grid": tok.grid,
                         "classes": data.classes, "metrics": metrics, **example_prompts(data, conditioning)})
    write_card(out, f"{out.name}: {recipe.title}" + (", text prompts" if text else ""),
               card_summary(recipe, preset, metrics, tok, tok_dir, model, dropout, flip)
               + (f" Weights {warm}." if warm else ""), command_line(), steps,
               seconds, {f"held-out {recipe.metric}": metrics["heldout_ce"], f"train {recipe.metric} (same count)":
                         metrics["train_ce"], "parameters": metrics["params"]})
    return metrics


def warm_start(model: torch.nn.Module, folder: Path, cls, paradigm: str) -> str:
    """Copy into `model` every tensor of `folder`'s generator with the same name and shape (fine-tuning).

    A text model started from a class model keeps the class model's blocks and learns only what differs
    (its prompt projection). Returns a line for the model card naming what was copied.
    """
    found = read_manifest(folder).get("paradigm")
    if found != paradigm:
        raise ValueError(f"--init {folder}: a {found} checkpoint cannot start a {paradigm} generator")
    source = load_component(folder, "generator", cls).state_dict()
    target = model.state_dict()
    shared = {k: v for k, v in source.items() if k in target and target[k].shape == v.shape}
    if not shared:
        raise ValueError(f"{folder}: no weights of its generator fit this model (different paradigm or size?)")
    model.load_state_dict({**target, **{k: v.float() for k, v in shared.items()}})
    fresh = sorted({k.split(".")[0] for k in target if k not in shared})
    return (f"initialised from `{folder.name}` ({len(shared)}/{len(target)} tensors; trained from scratch: "
            f"{', '.join(fresh) or 'none'})")


def example_prompts(data, conditioning: str, count: int = 8) -> dict:
    """For a text model: the plain names of a few held-out emoji, one per category, as the app's examples."""
    if conditioning != "text":
        return {}
    seen, names = set(), []
    for r in data.records:
        if (r["split"] == "heldout" and r["skin"] is None and r["category"] not in seen | {"Component"}
                and len(names) < count):
            seen.add(r["category"])
            names.append(r["name"].lower())
    return {"example_prompts": names}


def card_summary(recipe: Recipe, preset: str, metrics: dict, tok, tok_dir: Path, model, dropout: float, flip: bool) -> str:
    if model.config.get("conditioning", "class") == "text":
        cond = (f"conditioned on the prompt's MiniLM token states ({model.config.text_tokens} prefix tokens, padding "
                f"masked out of attention; captions from names and short names with light variations), caption "
                f"dropout {model.config.class_dropout} to a learned empty prompt for classifier-free guidance")
    else:
        cond = f"label dropout {model.config.class_dropout} for classifier-free guidance"
    return (f"{recipe.summary}. {metrics['params'] / 1e6:.2f}M parameters, preset `{preset}` ({recipe.presets[preset]}), "
            f"over the {tok.grid}x{tok.grid} grid of the `{tok_dir.name}` tokenizer (copied into `tokenizer/`); {cond}; "
            f"residual dropout {dropout}" + (", horizontal-flip augmentation" if flip else "")
            + ". Weights stored in float16, computed in float32.")
