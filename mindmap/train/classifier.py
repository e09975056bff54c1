"""`mindmap train classifier`: the emoji feature network behind FD-emoji and class consistency."""
from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F

from ..checkpoint import write_manifest
from ..data import load_emoji
from ..eval.classifier import EmojiClassifier, augment, embed, topk_agreement
from .common import Trainer, command_line, write_card

logger = logging.getLogger(__name__)


def train_classifier(out: Path, size: int = 32, steps: int = 3000, batch: int = 128, lr: float = 2e-3,
                     seed: int = 0, run_dir: Path | None = None, cpu: bool = False, mixed_precision: str = "no") -> dict:
    out = Path(out)
    data = load_emoji(size)
    images, labels = data.tensor(), torch.from_numpy(data.labels)
    train_idx = torch.from_numpy(data.indices("train"))
    held_idx = torch.from_numpy(data.indices("heldout"))
    torch.manual_seed(seed)
    model = EmojiClassifier(num_classes=len(data.classes), image_size=size)
    trainer = Trainer(model, steps, lr, run_dir or Path("runs") / out.name, weight_decay=0.05, cpu=cpu,
                      mixed_precision=mixed_precision)
    g = trainer.seeded(seed + 1)

    def loss_fn(step):
        idx = trainer.batch(train_idx, batch, seed, step)
        x = augment(images[idx], g).to(trainer.device)
        loss = F.cross_entropy(trainer.model(x), labels[idx].to(trainer.device), label_smoothing=0.1)
        return loss, {"ce": loss.item()}

    seconds = trainer.run(loss_fn, desc="classifier")
    if not trainer.is_main:
        return {}
    clf = trainer.unwrapped().cpu().eval()
    held = topk_agreement(embed(clf, images[held_idx])[1], labels[held_idx])
    train = topk_agreement(embed(clf, images[train_idx])[1], labels[train_idx])
    metrics = {"heldout_top1": held["top1"], "heldout_top5": held["top5"], "train_top1": train["top1"]}
    logger.info("metrics: %s", metrics)
    clf.save_pretrained(out / "classifier", safe_serialization=True)
    trainer.export_losses(out)
    write_manifest(out, {"kind": "classifier", "components": {"classifier": "classifier"}, "image_size": size,
                         "classes": data.classes, "metrics": metrics})
    n_params = sum(p.numel() for p in clf.parameters())
    write_card(out, f"{out.name}: emoji subcategory classifier (feature network for eval)",
               f"A small CNN ({n_params / 1e6:.2f}M parameters) classifying the {len(data.classes)} emoji "
               "subcategories; its 256-d penultimate features are the space of FD-emoji, precision/recall "
               "and class consistency in `python -m mindmap eval`. The held-out split holds emoji never seen "
               "in training, so held-out accuracy measures generalisation to new emoji of a subcategory.",
               command_line(), steps, seconds,
               {"held-out top-1": held["top1"], "held-out top-5": held["top5"], "train top-1": train["top1"],
                "parameters": n_params})
    return metrics
