"""`mindmap eval`: measured quality of a generator or a tokenizer, in the emoji classifier's features."""
from __future__ import annotations

import importlib.util
import logging
import time
from pathlib import Path

import torch

from ..checkpoint import default_root, load_component, read_manifest
from ..controls import MAX_BATCH
from ..data import load_emoji
from ..frames import codes_per_image
from ..registry import list_models, load_pipeline, load_tokenizer
from .classifier import EmojiClassifier, embed, topk_agreement
from .metrics import (frechet_distance, nearest_distances, precision_recall, preview_psnr, ssim,
                      tokenizer_metrics)

logger = logging.getLogger(__name__)
CLASSIFIER = "classifier-emoji32"


def load_classifier(root: Path | None = None) -> EmojiClassifier:
    folder = Path(root or default_root()) / CLASSIFIER
    return load_component(folder, "classifier", EmojiClassifier)


def inception_fid_note() -> str:
    """Why Inception FID is not reported, in one line (weights cannot be fetched here)."""
    for pkg in ("torch_fidelity", "pytorch_fid"):
        if importlib.util.find_spec(pkg) is not None:
            return f"{pkg} is installed but its Inception weights are not on disk; FID skipped (offline)"
    return "no torch-fidelity/pytorch-fid with local Inception weights; FID skipped (offline)"


def style_threshold(data) -> float:
    """Median pixel L2 between the Twemoji and Noto images of the same training emoji (no skin tones)."""
    by_emoji: dict[str, dict[str, int]] = {}
    for i, r in enumerate(data.records):
        if r["split"] == "train" and r["skin"] is None:
            by_emoji.setdefault(r["emoji"], {})[r["style"]] = i
    pairs = [(d["twitter"], d["google"]) for d in by_emoji.values() if len(d) == 2]
    a, b = data.tensor([p[0] for p in pairs]), data.tensor([p[1] for p in pairs])
    return (a - b).flatten(1).norm(dim=1).median().item()


def _balanced_labels(num_classes: int, n: int) -> torch.Tensor:
    return torch.arange(n) % num_classes


def _sample(pipe, labels: torch.Tensor, seed: int, controls: dict):
    """One image per label, batched per class: (images, seconds per image, the last Frame, their labels)."""
    images, done, seconds, frame = [], [], 0.0, None
    for k, label in enumerate(labels.unique().tolist()):
        count = int((labels == label).sum())
        for start in range(0, count, MAX_BATCH):
            b = min(MAX_BATCH, count - start)
            t0 = time.perf_counter()
            frame = pipe(**{"class": pipe.classes[label]}, seed=seed + 7919 * k + start, batch=b, **controls)
            seconds += time.perf_counter() - t0
            images.append(frame.image.cpu())
            done.append(torch.full((b,), label))
    return torch.cat(images), seconds / len(labels), frame, torch.cat(done)


# The controls each paradigm is judged at besides its defaults (`eval --all`): the speed levers.
SWEEPS = {"masked": [{"steps": 4}, {"steps": 8}, {"steps": 16}], "hybrid": [{"prefix": 16}, {"prefix": 32}]}


def variant_name(name: str, controls: dict) -> str:
    return name + "".join(f" {k}={v}" for k, v in controls.items())


def eval_all(n: int = 990, seed: int = 0, root: Path | None = None) -> list[dict]:
    """Every generator at its defaults, and at its paradigm's sweep (e.g. masked at 4, 8, 16 steps)."""
    rows = []
    for m in list_models(root):
        for controls in SWEEPS.get(m.manifest["paradigm"], [{}]):
            rows.append(eval_generator(m.name, n=n, seed=seed, root=root, controls=controls))
    return rows


def eval_generator(name: str, n: int = 990, seed: int = 0, root: Path | None = None, controls: dict | None = None) -> dict:
    if not 10 <= n <= 20000:
        raise ValueError(f"--n must be an integer in [10, 20000], got {n}")
    controls = dict(controls or {})
    pipe = load_pipeline(name, root)
    pipe.controls(**controls)  # refuse a bad control before sampling anything
    data = load_emoji(pipe.manifest["image_size"])
    clf = load_classifier(root)
    labels = _balanced_labels(len(pipe.classes), n)
    fake, sec_per_image, last_frame, fake_labels = _sample(pipe, labels, seed, controls)
    calls = last_frame.network_calls
    held = data.tensor(data.indices("heldout"))
    train_idx = data.indices("train")
    # Real-vs-real floor: training images with the same per-class counts as the samples, against the
    # same held-out set -- what a generator that reproduced its training data would score.
    g = torch.Generator().manual_seed(seed)
    train_labels = torch.from_numpy(data.labels[train_idx])
    floor_idx = []
    for label in fake_labels.unique().tolist():
        pool = torch.from_numpy(train_idx)[train_labels == label]
        want = int((fake_labels == label).sum())
        floor_idx.append(pool[torch.randint(0, len(pool), (want,), generator=g)])
    floor_real = data.tensor(torch.cat(floor_idx).numpy())
    f_fake, logits = embed(clf, fake)
    f_held, f_floor = embed(clf, held)[0], embed(clf, floor_real)[0]
    agree = topk_agreement(logits, fake_labels)
    memo = nearest_distances(fake, data.tensor(train_idx)) < style_threshold(data)
    return {"model": variant_name(name, controls), "paradigm": pipe.manifest["paradigm"], "controls": controls,
            "n": len(fake), "params": sum(p.numel() for role, part in pipe.parts.items() if role != "tokenizer"
                                          for p in part.parameters()),
            "tokens": codes_per_image(last_frame),
            "fd_emoji": frechet_distance(f_fake, f_held), "fd_emoji_floor": frechet_distance(f_floor, f_held),
            "class_top1": agree["top1"], "class_top5": agree["top5"],
            **precision_recall(f_held, f_fake), "memorized": memo.float().mean().item(),
            "seconds_per_image": sec_per_image, "network_calls": calls,
            "fid_inception": None, "fid_note": inception_fid_note()}


def eval_tokenizer(name: str, root: Path | None = None) -> dict:
    """Held-out PSNR, SSIM, rFD-emoji and codebook use; PSNR of every preview row (each depth, mask ratio...)."""
    tok = load_tokenizer(name, root)
    data = load_emoji(tok.image_size)
    held = data.tensor(data.indices("heldout"))
    recon = torch.cat([tok.previews(x)[-1][1] for x in held.split(256)])      # the last row: the finest level
    clf = load_classifier(root)
    return {"tokenizer": name, "kind": read_manifest(Path(root or default_root()) / name).get("tokenizer", "vq"),
            "tokens": getattr(tok, "tokens", None) if hasattr(tok, "scales") else tok.grid ** 2 * tok.config.get("depth", 1),
            **tokenizer_metrics(tok, held), "psnr_by_preview": preview_psnr(tok, held),
            "ssim": ssim(recon, held).mean().item(), "rfd_emoji": frechet_distance(embed(clf, recon)[0], embed(clf, held)[0])}
