"""`mindmap train tokenizer`: the VQ tokenizer on emoji (L1 + MSE reconstruction + VQ losses)."""
from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F

from ..checkpoint import write_manifest
from ..data import load_emoji
from ..eval.metrics import tokenizer_metrics
from ..tokenizers.vq import VQTokenizer
from .common import Trainer, batch_indices, command_line, write_card

logger = logging.getLogger(__name__)


def train_tokenizer(out: Path, size: int = 32, steps: int = 1500, batch: int = 64, lr: float = 1e-3,
                    codebook_size: int = 512, seed: int = 0, run_dir: Path | None = None,
                    channels: tuple = (32, 64, 64), cpu: bool = False) -> dict:
    out = Path(out)
    data = load_emoji(size)
    train_idx = torch.from_numpy(data.indices("train"))
    torch.manual_seed(seed)  # weight init
    model = VQTokenizer(image_size=size, block_out_channels=tuple(channels), codebook_size=codebook_size)
    trainer = Trainer(model, steps, lr, run_dir or Path("runs") / out.name, cpu=cpu)
    images = data.tensor()
    restart_gen = torch.Generator().manual_seed(seed)
    last = {}

    def loss_fn(step):
        x = images[batch_indices(train_idx, batch, seed, step)].to(trainer.device)
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
    metrics = tokenizer_metrics(tok, data.tensor(data.indices("heldout")))
    logger.info("held-out: %s", metrics)
    tok.save_pretrained(out / "tokenizer", safe_serialization=True)
    write_manifest(out, {"kind": "tokenizer", "tokenizer": "vq", "components": {"tokenizer": "tokenizer"},
                         "image_size": size, "grid": tok.grid, "classes": data.classes, "metrics": metrics})
    n_params = sum(p.numel() for p in tok.parameters())
    write_card(out, f"{out.name}: VQ tokenizer, {size}x{size} px -> {tok.grid}x{tok.grid} codes",
               f"LlamaGen-style VQ tokenizer ({n_params / 1e6:.2f}M parameters): diffusers conv encoder/decoder "
               f"(channels {list(channels)}), {codebook_size} l2-normalised {tok.config.code_dim}-dim codes, "
               "dead-code restarts during training. Loss: L1 + MSE + codebook/commitment (0.25).",
               command_line(), steps, seconds, {"held-out images": metrics["images"],
                                                 "PSNR (dB)": metrics["psnr"],
                                                 "codebook usage": metrics["codebook_usage"],
                                                 "code perplexity": metrics["perplexity"]})
    return metrics
