"""`mindmap train tokenizer`: a VQ, RQ or MQ tokenizer on emoji (L1 + MSE reconstruction + quantizer losses)."""
from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F

from ..checkpoint import write_manifest
from ..data import load_emoji
from ..eval.metrics import preview_psnr, tokenizer_metrics
from ..tokenizers import TOKENIZERS
from ..tokenizers.rq import random_depths
from .common import Trainer, batch_indices, command_line, write_card

logger = logging.getLogger(__name__)

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
}


def train_tokenizer(out: Path, kind: str = "vq", size: int = 32, steps: int = 1500, batch: int = 64, lr: float = 1e-3,
                    codebook_size: int = 512, depth: int = 4, seed: int = 0, run_dir: Path | None = None,
                    channels: tuple = (32, 64, 64), cpu: bool = False) -> dict:
    if kind not in DESCRIPTIONS:
        raise ValueError(f"--kind must be one of {list(DESCRIPTIONS)}, got {kind!r}")
    out = Path(out)
    data = load_emoji(size)
    train_idx = torch.from_numpy(data.indices("train"))
    torch.manual_seed(seed)  # weight init
    extra = {"depth": depth} if kind == "rq" else {}
    model = TOKENIZERS[kind](image_size=size, block_out_channels=tuple(channels), codebook_size=codebook_size,
                             **extra)
    trainer = Trainer(model, steps, lr, run_dir or Path("runs") / out.name, cpu=cpu)
    images = data.tensor()
    restart_gen = torch.Generator().manual_seed(seed)
    last = {}

    def loss_fn(step):
        x = images[batch_indices(train_idx, batch, seed, step)].to(trainer.device)
        if kind == "rq":
            depths = random_depths(batch, depth, restart_gen).to(trainer.device)
            recon, codes, vq_loss, z = trainer.model(x, depths)
        elif kind == "mq":
            lo, hi = model.config.min_mask_ratio, model.config.max_mask_ratio
            ratio = lo + (hi - lo) * torch.rand((), generator=restart_gen).item()
            recon, kept, vq_loss, z = trainer.model(x, ratio)
        else:
            recon, codes, vq_loss, z = trainer.model(x)
        rec = F.l1_loss(recon, x) + F.mse_loss(recon, x)
        last["z"] = z.detach()
        return rec + vq_loss, {"rec": rec.item(), "vq": vq_loss.item()}

    def every(step):
        if step % 50 == 49 and step < 0.8 * steps:  # let the codebook settle before the end
            n = trainer.unwrapped().quantizer.restart_dead(last["z"].cpu(), restart_gen)
            if n:
                logger.info("step %d: restarted %d dead codes", step, n)

    seconds = trainer.run(loss_fn, desc="tokenizer", every=every)
    tok = trainer.unwrapped().cpu().eval()
    held = data.tensor(data.indices("heldout"))
    metrics = tokenizer_metrics(tok, held)
    table = {"held-out images": metrics["images"], "PSNR (dB)": metrics["psnr"]}
    by_level = preview_psnr(tok, held)
    if len(by_level) > 1:                       # each depth (rq) or mask ratio (mq)
        metrics["psnr_by_preview"] = by_level
        table.update({f"PSNR, {label} (dB)": v for label, v in by_level.items()})
    table.update({"codebook usage": metrics["codebook_usage"], "code perplexity": metrics["perplexity"]})
    logger.info("held-out: %s", metrics)
    tok.save_pretrained(out / "tokenizer", safe_serialization=True)
    write_manifest(out, {"kind": "tokenizer", "tokenizer": kind, "components": {"tokenizer": "tokenizer"},
                         "image_size": size, "grid": tok.grid, "classes": data.classes, "metrics": metrics})
    n_params = sum(p.numel() for p in tok.parameters())
    shape = f"{tok.grid}x{tok.grid}" + (f"x{depth}" if kind == "rq" else "") + (" (kept cells)" if kind == "mq" else "")
    if kind == "msvq":
        shape = " + ".join(f"{s}x{s}" for s in tok.scales)
    write_card(out, f"{out.name}: {kind.upper()} tokenizer, {size}x{size} px -> {shape} codes",
               DESCRIPTIONS[kind].format(**dict(tok.config)) + f" ({n_params / 1e6:.2f}M parameters): diffusers "
               f"conv encoder/decoder (channels {list(channels)}), codebook of {codebook_size}, dead-code restarts "
               "during training. Loss: L1 + MSE + codebook/commitment (0.25).",
               command_line(), steps, seconds, table)
    return metrics
