"""`mindmap train classifier`: the emoji feature network behind FD-emoji and class consistency."""
from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F

from ..checkpoint import load_component, read_manifest, save_component, write_manifest
from ..data import load_emoji
from ..eval.classifier import EmojiClassifier, augment, embed, topk_agreement
from .common import Trainer, command_line, write_card

logger = logging.getLogger(__name__)


def train_classifier(out: Path, size: int = 32, steps: int = 3000, batch: int = 128, lr: float = 2e-3,
                     seed: int = 0, run_dir: Path | None = None, cpu: bool = False, mixed_precision: str = "no",
                     styles=None) -> dict:
    out = Path(out)
    data = load_emoji(size, styles=styles)
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
                         "classes": data.classes, "trained_on_styles": data.styles, "metrics": metrics})
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


def fit_style_head(folder: Path, steps: int = 1000, lr: float = 3e-3, seed: int = 0) -> dict:
    """Fit the classifier's style head (an MLP on the frozen body's style statistics) on every style's training
    images (full batch, Adam) and save it into the classifier's folder with the style list: the body, features
    and class head stay as they were, so every FD-emoji stays comparable."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest.get("kind") != "classifier":
        raise ValueError(f"{folder}: a {manifest.get('kind')} checkpoint, not the eval classifier")
    clf = load_component(folder, "classifier", EmojiClassifier).eval()
    data = load_emoji(clf.config.image_size)
    if data.classes != manifest["classes"]:
        raise ValueError(f"{folder}: its class list differs from the emoji data's")
    images = data.tensor()
    with torch.no_grad():
        stats = torch.cat([clf.style_statistics(images[i:i + 512]) for i in range(0, len(images), 512)])
    styles = torch.from_numpy(data.style_ids)
    train_idx, held_idx = (torch.from_numpy(data.indices(s)) for s in ("train", "heldout"))
    torch.manual_seed(seed)
    styled = EmojiClassifier(**{**dict(clf.config), "num_styles": len(data.styles)})
    styled.load_state_dict(clf.state_dict(), strict=False)
    styled.style_mean.copy_(stats[train_idx].mean(0))
    styled.style_std.copy_(stats[train_idx].std(0) + 1e-6)
    x = (stats - styled.style_mean) / styled.style_std
    head = styled.style_head
    opt = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=1e-4)
    head.train()
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(head(x[train_idx]), styles[train_idx]).backward()
        opt.step()
    styled.eval()
    with torch.no_grad():
        top1 = {split: (head(x[idx]).argmax(1) == styles[idx]).float().mean().item()
                for split, idx in (("train", train_idx), ("heldout", held_idx))}
    save_component(styled, folder / "classifier")
    metrics = {**manifest.get("metrics", {}), "style_heldout_top1": top1["heldout"], "style_train_top1": top1["train"]}
    write_manifest(folder, {**manifest, "styles": data.styles, "metrics": metrics})
    card = folder / "README.md"
    text = card.read_text().split("\n## Style head")[0].rstrip() if card.exists() else f"# {folder.name}"
    card.write_text(f"{text}\n\n## Style head\n\nAn MLP naming the art style ({', '.join(data.styles)}) from the "
                    f"frozen body's style statistics (each stage's channel means and standard deviations, "
                    f"standardised), fitted by `{command_line()}` ({steps} full-batch Adam steps on {len(train_idx)} "
                    f"training images of every style). Held-out top-1: {top1['heldout']:.4f}; train: "
                    f"{top1['train']:.4f}. The body, the features and the class head are unchanged, so FD-emoji and "
                    f"class agreement read the same network as before.\n")
    logger.info("style head: held-out top-1 %.4f, train %.4f over %s", top1["heldout"], top1["train"], data.styles)
    return {"style_heldout_top1": top1["heldout"], "style_train_top1": top1["train"], "styles": data.styles}
