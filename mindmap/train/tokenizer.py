"""`mindmap train tokenizer`: a VQ or RQ tokenizer on emoji (L1 + MSE reconstruction + quantizer losses)."""
from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F

from ..checkpoint import write_manifest
from ..data import load_emoji
from ..eval.metrics import psnr, tokenizer_metrics
from ..tokenizers import TOKENIZERS
from ..tokenizers.rq import random_depths
from .common import Trainer, batch_indices, command_line, write_card

logger = logging.getLogger(__name__)

DESCRIPTIONS = {
    "vq": "LlamaGen-style VQ tokenizer: l2-normalised {code_dim}-dim codes (cosine lookup)",
    "rq": "RQ tokenizer: {depth} residual codes per cell from one shared codebook of {code_dim}-dim codes, "
          "decoder trained on random depths (half the rows at full depth) so every depth decodes",
}


@torch.no_grad()
def psnr_by_depth(tok, images: torch.Tensor, batch: int = 256) -> list[float]:
    """Held-out PSNR when decoding from the first d residual codes, d = 1 .. depth."""
    out = []
    for d in range(1, tok.depth + 1):
        scores = [psnr(tok.decode(tok.encode(x)[..., :d]), x) for x in images.split(batch)]
        out.append(torch.cat(scores).mean().item())
    return out


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
    if kind == "rq":
        metrics["psnr_by_depth"] = psnr_by_depth(tok, held)
        table.update({f"PSNR at depth {d} (dB)": v for d, v in enumerate(metrics["psnr_by_depth"], 1)})
    table.update({"codebook usage": metrics["codebook_usage"], "code perplexity": metrics["perplexity"]})
    logger.info("held-out: %s", metrics)
    tok.save_pretrained(out / "tokenizer", safe_serialization=True)
    write_manifest(out, {"kind": "tokenizer", "tokenizer": kind, "components": {"tokenizer": "tokenizer"},
                         "image_size": size, "grid": tok.grid, "classes": data.classes, "metrics": metrics})
    n_params = sum(p.numel() for p in tok.parameters())
    shape = f"{tok.grid}x{tok.grid}" + (f"x{depth}" if kind == "rq" else "")
    write_card(out, f"{out.name}: {kind.upper()} tokenizer, {size}x{size} px -> {shape} codes",
               DESCRIPTIONS[kind].format(**dict(tok.config)) + f" ({n_params / 1e6:.2f}M parameters): diffusers "
               f"conv encoder/decoder (channels {list(channels)}), codebook of {codebook_size}, dead-code restarts "
               "during training. Loss: L1 + MSE + codebook/commitment (0.25).",
               command_line(), steps, seconds, table)
    return metrics
