"""`mindmap train tokenizer`: a VQ, RQ, MQ, multi-scale (VAR) or KL (MAR) tokenizer on emoji.

Loss: L1 + MSE reconstruction plus the quantizer's codebook/commitment terms (KL: a small KL term);
optionally (`features`, `adversarial`) a feature-matching term in the emoji classifier's stages and, after
`gan_start` of the steps, a patch discriminator's hinge loss at VQGAN's adaptive weight (`adversarial.py`).
Discrete codebooks get dead-code restarts during the first 80% of training.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate.utils import broadcast

from ..checkpoint import write_manifest
from ..data import load_emoji
from ..eval.metrics import tokenizer_metrics
from ..tokenizers import TOKENIZERS
from ..tokenizers.rq import random_depths
from .adversarial import PatchDiscriminator, adaptive_weight, decoder_last_layer, hinge_d_loss, load_feature_matching
from .common import Trainer, calibrated_steps, command_line, time_steps, write_card

logger = logging.getLogger(__name__)

KL_WEIGHT = 1e-5
DESCRIPTIONS = {
    "vq": "LlamaGen-style VQ tokenizer: l2-normalised {code_dim}-dim codes (cosine lookup)",
    "rq": "RQ tokenizer: {depth} residual codes per cell from one shared codebook of {code_dim}-dim codes, "
          "decoder trained on random depths (half the rows at full depth) so every depth decodes",
    "mq": "MQ-VAE tokenizer: an importance scorer keeps the top (1 - mask ratio) of the cells, their features "
          "scaled by the score and quantized to {code_dim}-dim Euclidean codes; adaptive de-mask with "
          "{demask_layers} attention layers (keys at masked cells x0.02, relaxed to x1 by the last layer). "
          "Trained with a mask ratio drawn uniformly from [{min_mask_ratio}, {max_mask_ratio}] per step, so one "
          "checkpoint serves the whole control",
    "msvq": "VAR multi-scale residual tokenizer: scales {scales}, one shared codebook of {code_dim}-dim Euclidean "
            "codes, area down-sampling, bicubic up-sampling and a 3x3 refinement conv (phi) per scale",
    "kl": "diffusers AutoencoderKL: {latent_channels}-channel continuous latents on the grid, KL weight "
          f"{KL_WEIGHT} (on the summed KL), scaling factor {{scaling_factor:.4f}} measured on the training set "
          "(1 / std of the latents) and stored in the config",
}


def sharpened_loss(kind: str, model, x: torch.Tensor, g: torch.Generator, matcher=None, disc=None, disc_step=None,
                   features: float = 0.0, adversarial: float = 0.0):
    """One training pass of a tokenizer: (loss, logs, latents for dead-code restarts or None). L1 + MSE, the
    quantizer's (or KL) term, `features` x feature matching (`matcher`), and with a discriminator `disc`: one step
    of it (`disc_step(hinge loss)`) and its adversarial term at VQGAN's adaptive weight x `adversarial`."""
    recon, extra_loss, z = reconstruct(kind, model, x, g)
    rec = F.l1_loss(recon, x) + F.mse_loss(recon, x)
    logs = {"rec": rec.item(), "aux": extra_loss.item()}
    if matcher is not None:
        fm = matcher(recon, x)
        rec = rec + features * fm
        logs["features"] = fm.item()
    loss = rec + extra_loss
    if disc is not None:
        d_loss = hinge_d_loss(disc(x), disc(recon.detach()))
        disc_step(d_loss)
        gan = -disc(recon).mean()
        weight = adaptive_weight(rec, gan, decoder_last_layer(model))
        loss = loss + weight * adversarial * gan
        logs.update(disc=d_loss.item(), gan=gan.item(), gan_weight=weight.item() * adversarial)
    return loss, logs, z


def build_tokenizer(kind: str, size: int, channels: tuple, codebook_size: int, depth: int):
    if kind == "kl":
        n = len(channels)
        return TOKENIZERS["kl"](down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
                                block_out_channels=tuple(channels), latent_channels=8, norm_num_groups=16,
                                sample_size=size)
    extra = {"depth": depth} if kind == "rq" else {}
    return TOKENIZERS[kind](image_size=size, block_out_channels=tuple(channels), codebook_size=codebook_size, **extra)


def reconstruct(kind: str, model, x: torch.Tensor, g: torch.Generator):
    """One training pass: (reconstruction, quantizer or KL loss, latents for dead-code restarts or None)."""
    if kind == "kl":
        posterior = model.encode(x).latent_dist
        recon = model.decode(posterior.sample(generator=g)).sample
        return recon, KL_WEIGHT * posterior.kl().mean(), None
    if kind == "rq":
        recon, _, loss, z = model(x, random_depths(len(x), model.config.depth, g).to(x.device))
    elif kind == "mq":
        lo, hi = model.config.min_mask_ratio, model.config.max_mask_ratio
        recon, _, loss, z = model(x, lo + (hi - lo) * torch.rand((), generator=g).item())
    else:
        recon, _, loss, z = model(x)
    return recon, loss, z


@torch.no_grad()
def restart_dead_codes(trainer, quantizer, z: torch.Tensor, g: torch.Generator) -> int:
    """Dead-code restarts that keep every process's codebook identical: usage counts are averaged and the
    latents gathered over processes, the main process restarts, and its codebook is broadcast."""
    quantizer.usage.copy_(trainer.accelerator.reduce(quantizer.usage, reduction="mean"))
    z = trainer.accelerator.gather(z).cpu()
    n = quantizer.restart_dead(z, g) if trainer.is_main else 0
    for t in (quantizer.codebook.weight.data, quantizer.usage):
        t.copy_(broadcast(t.clone()))
    return n


@torch.no_grad()
def measure_scaling(tok, images: torch.Tensor, batch: int = 512) -> float:
    """1 / std of the posterior means over `images`: the KL latents' scaling factor."""
    device = next(tok.parameters()).device
    latents = torch.cat([tok.encode(x.to(device)).latent_dist.mode() for x in images.split(batch)])
    return 1.0 / latents.std().item()


def train_tokenizer(out: Path, kind: str = "vq", size: int = 32, steps: int = 1500, batch: int = 64, lr: float = 1e-3,
                    codebook_size: int = 512, depth: int = 4, seed: int = 0, run_dir: Path | None = None,
                    channels: tuple = (32, 64, 64), cpu: bool = False, mixed_precision: str = "no",
                    styles=None, features: float = 0.0, adversarial: float = 0.0, gan_start: float = 0.3,
                    calibrate: tuple | None = None) -> dict:
    """`styles`: the emoji styles to train on and score (None: every style built). `features`: the weight of the
    feature-matching term; `adversarial`: the weight of the patch discriminator's term (times the adaptive
    weight), switched on after a share `gan_start` of the steps (0: no discriminator). `calibrate`: (sync folder,
    name, processes, seconds): `steps` set by `calibrated_steps` for a suite phase sharing one device."""
    if kind not in DESCRIPTIONS:
        raise ValueError(f"--kind must be one of {list(DESCRIPTIONS)}, got {kind!r}")
    for name, value in (("features", features), ("adversarial", adversarial), ("gan-start", gan_start)):
        if not (value >= 0 and value == value and value != float("inf")) or (name == "gan-start" and value > 1):
            raise ValueError(f"--{name} must be a finite number >= 0" + (" and <= 1" if name == "gan-start" else "")
                             + f", got {value}")
    if adversarial and mixed_precision == "fp16":
        raise ValueError("--adversarial trains a discriminator beside the tokenizer: use --mixed-precision no or bf16")
    out = Path(out)
    data = load_emoji(size, styles=styles)
    train_idx = torch.from_numpy(data.indices("train"))
    torch.manual_seed(seed)  # weight init
    model = build_tokenizer(kind, size, channels, codebook_size, depth)
    disc = PatchDiscriminator() if adversarial else None
    trainer = Trainer(model, steps, lr, run_dir or Path("runs") / out.name, cpu=cpu, mixed_precision=mixed_precision,
                      companion=disc, defer=calibrate is not None)
    matcher = load_feature_matching().to(trainer.device) if features else None
    images = data.tensor()
    weights = {"features": features, "adversarial": adversarial}
    if calibrate is not None:                   # the suite's shared device: steps from the slowest model's step
        x = images[train_idx[:batch]].to(trainer.device)
        probe_g = torch.Generator().manual_seed(seed)
        steps = calibrated_steps(*calibrate, probe=lambda: time_steps(
            model, lambda m, d, d_step, _: sharpened_loss(kind, m, x, probe_g, matcher, d, d_step, **weights)[0],
            trainer.device, mixed_precision, companion=disc))
        trainer.plan(steps)
    g = trainer.seeded(seed)
    last = {}

    def loss_fn(step):
        x = images[trainer.batch(train_idx, batch, seed, step)].to(trainer.device)
        on = disc is not None and step >= gan_start * steps
        loss, logs, z = sharpened_loss(kind, trainer.model, x, g, matcher, trainer.companion if on else None,
                                       trainer.companion_step, **weights)
        last["z"] = None if z is None else z.detach()
        if disc is not None and not on:         # the same log columns before and after the discriminator starts
            logs.update(disc=0.0, gan=0.0, gan_weight=0.0)
        return loss, logs

    def every(step):
        if last.get("z") is not None and step % 50 == 49 and step < 0.8 * steps:  # let the codebook settle
            n = restart_dead_codes(trainer, trainer.unwrapped().quantizer, last["z"], g)
            if n:
                logger.info("step %d: restarted %d dead codes", step, n)

    seconds = trainer.run(loss_fn, desc=f"{kind} tokenizer", every=every)
    if not trainer.is_main:
        return {}
    tok = trainer.unwrapped().eval()            # measured on the training device, saved from the CPU
    if kind == "kl":
        tok.register_to_config(scaling_factor=measure_scaling(tok, images[train_idx]))
    held = data.tensor(data.indices("heldout"))
    metrics = tokenizer_metrics(tok, held)
    logger.info("held-out: %s", metrics)
    tok = tok.cpu()
    tok.save_pretrained(out / "tokenizer", safe_serialization=True)
    trainer.export_losses(out)
    write_manifest(out, {"kind": "tokenizer", "tokenizer": kind, "components": {"tokenizer": "tokenizer"},
                         "image_size": size, "grid": tok.grid, "classes": data.classes, "styles": data.styles,
                         "metrics": metrics})
    write_card(out, f"{out.name}: {kind.upper()} tokenizer, {size}x{size} px -> {token_shape(kind, tok)}",
               DESCRIPTIONS[kind].format(**dict(tok.config))
               + f" ({sum(p.numel() for p in tok.parameters()) / 1e6:.2f}M parameters): diffusers conv "
               f"encoder/decoder (channels {list(channels)})"
               + (f", codebook of {codebook_size}, dead-code restarts during training." if kind != "kl" else ".")
               + sharpening(features, adversarial, gan_start), command_line(), steps, seconds, card_table(metrics),
               styles=data.styles)
    return metrics


def sharpening(features: float, adversarial: float, gan_start: float) -> str:
    """The model card's line on the losses beyond L1 + MSE."""
    parts = []
    if features:
        parts.append(f"a feature-matching term (weight {features:g}) in the frozen stages of `classifier-emoji32`, the "
                     f"network rFD-emoji is read in")
    if adversarial:
        parts.append(f"a patch discriminator (hinge loss, VQGAN's adaptive weight x {adversarial:g}) from "
                     f"{gan_start:.0%} of the steps")
    return f" Losses beyond L1 + MSE: {'; '.join(parts)}." if parts else ""


def token_shape(kind: str, tok) -> str:
    if kind == "msvq":
        return " + ".join(f"{s}x{s}" for s in tok.scales) + " codes"
    if kind == "kl":
        return f"{tok.grid}x{tok.grid} continuous {tok.token_dim}-dim tokens"
    return f"{tok.grid}x{tok.grid}" + (f"x{tok.config.depth}" if kind == "rq" else "") + \
        (" codes (the kept cells)" if kind == "mq" else " codes")


def card_table(metrics: dict) -> dict:
    table = {"held-out images": metrics["images"], "PSNR (dB), finest level": metrics["psnr"]}
    table.update({f"PSNR, {label} (dB)": v for label, v in metrics.get("psnr_by_preview", {}).items()})
    if "codebook_usage" in metrics:
        table.update({"codebook usage": metrics["codebook_usage"], "code perplexity": metrics["perplexity"]})
    return table
