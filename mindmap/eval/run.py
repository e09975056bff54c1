"""`mindmap eval`: measured quality of a generator or a tokenizer, in the emoji classifier's features."""
from __future__ import annotations

import fnmatch
import importlib.util
import logging
import time
from pathlib import Path

import torch

from ..checkpoint import default_root, load_component, read_manifest
from ..controls import MAX_BATCH
from ..data import STYLES, load_emoji, model_styles
from ..data.emoji import LEGACY_STYLES
from .. import paradigms
from ..registry import list_models, load_pipeline, load_tokenizer
from .classifier import EmojiClassifier, embed, topk_agreement
from .metrics import (fd_interval, frechet_distance, kernel_distance, nearest_distances, precision_recall,
                      ssim, tokenizer_metrics)

logger = logging.getLogger(__name__)
CLASSIFIER = "classifier-emoji32"


def load_classifier(root: Path | None = None) -> EmojiClassifier:
    """The eval classifier; `style_names` is its style head's output order (its manifest's styles; [] without)."""
    folder = Path(root or default_root()) / CLASSIFIER
    clf = load_component(folder, "classifier", EmojiClassifier)
    clf.style_names = list(read_manifest(folder).get("styles") or []) if clf.style_head is not None else []
    return clf


def inception_fid_note() -> str:
    """Why Inception FID is not reported, in one line (weights cannot be fetched here)."""
    for pkg in ("torch_fidelity", "pytorch_fid"):
        if importlib.util.find_spec(pkg) is not None:
            return f"{pkg} is installed but its Inception weights are not on disk; FID skipped (offline)"
    return "no torch-fidelity/pytorch-fid with local Inception weights; FID skipped (offline)"


def style_threshold(size: int = 32) -> float:
    """Median pixel L2 between the Twemoji and Noto images of the same training emoji (no skin tones): one
    threshold for every model and style subset, so memorised shares compare."""
    data = load_emoji(size, styles=list(LEGACY_STYLES))
    by_emoji: dict[str, dict[str, int]] = {}
    for i, r in enumerate(data.records):
        if r["split"] == "train" and r["skin"] is None:
            by_emoji.setdefault(r["emoji"], {})[r["style"]] = i
    pairs = [(d["twitter"], d["google"]) for d in by_emoji.values() if len(d) == 2]
    a, b = data.tensor([p[0] for p in pairs]), data.tensor([p[1] for p in pairs])
    return (a - b).flatten(1).norm(dim=1).median().item()


def _balanced_labels(num_classes: int, n: int) -> torch.Tensor:
    return torch.arange(n) % num_classes


def _timed(pipe, seed: int, batch: int, values: dict):
    t0 = time.perf_counter()
    frame = pipe(seed=seed, batch=batch, **values)
    return frame, time.perf_counter() - t0


def sample_classes(pipe, n: int, seed: int, controls: dict, asked: list[str] | None = None):
    """n images spread evenly over the classes, batched per class: (images, labels, seconds/image, last Frame,
    style ids). A model with a style condition draws each batch in the next of the `asked` styles (default: all
    of its own) in turn (the style ids index `pipe.styles`); without one the style ids are None."""
    labels = _balanced_labels(len(pipe.classes), n)
    images, done, styles, seconds, frame = [], [], [], 0.0, None
    asked = list(asked or pipe.styles)
    for k, label in enumerate(labels.unique().tolist()):
        count = int((labels == label).sum())
        for start in range(0, count, MAX_BATCH):
            b = min(MAX_BATCH, count - start)
            style = {"style": asked[len(styles) % len(asked)]} if pipe.styles else {}
            frame, sec = _timed(pipe, seed + 7919 * k + start, b, {"class": pipe.classes[label], **style, **controls})
            seconds += sec
            images.append(frame.image.cpu())
            done.append(torch.full((b,), label))
            styles.append(torch.full((b,), pipe.styles.index(style["style"]) if style else -1))
    return (torch.cat(images), torch.cat(done), seconds / n, frame,
            torch.cat(styles) if pipe.styles else None)


def heldout_prompts(data, n: int) -> list[dict]:
    """One prompt per held-out emoji (its plain name; no skin tones): name, label, its real images' indices."""
    emojis: dict[str, dict] = {}
    for i, r in enumerate(data.records):
        if r["split"] == "heldout" and r["skin"] is None:
            e = emojis.setdefault(r["emoji"], {"name": r["name"].lower(), "label": r["label"], "real": []})
            e["real"].append(i)
    return list(emojis.values())[:n]


def sample_prompts(pipe, items: list[dict], seed: int, controls: dict):
    """One image per held-out prompt: (images, their emoji's labels, seconds/image, last Frame)."""
    images, seconds, frame = [], 0.0, None
    for k, item in enumerate(items):
        frame, sec = _timed(pipe, seed + k, 1, {"prompt": item["name"], **controls})
        seconds += sec
        images.append(frame.image.cpu())
    return torch.cat(images), torch.tensor([it["label"] for it in items]), seconds / len(items), frame


def retrieval(f_fake: torch.Tensor, items: list[dict], data, clf, ks=(1, 5, 10)) -> dict:
    """For each image made from a held-out prompt: is a real image of that emoji among its k nearest held-out
    real images (classifier features)? Also the chance level of each k."""
    pool = [i for it in items for i in it["real"]]
    owner = torch.tensor([k for k, it in enumerate(items) for _ in it["real"]])
    f_real = embed(clf, data.tensor(pool))[0]
    near = torch.cdist(f_fake.float(), f_real.float()).argsort(dim=1)               # (fake, pool)
    hits = owner[near] == torch.arange(len(items))[:, None]
    out = {}
    for k in ks:
        out[f"retrieval_top{k}"] = hits[:, :k].any(1).float().mean().item()
        out[f"retrieval_top{k}_chance"] = min(1.0, k * len(pool) / len(items) / len(pool))
    return out


def training_images(data, fake_labels: torch.Tensor, seed: int) -> torch.Tensor:
    """Training images with the same per-class counts as the samples, scored like them: what reproducing the
    training data would score (not a floor: the held-out split holds other emoji than training does)."""
    g = torch.Generator().manual_seed(seed)
    train_idx = torch.from_numpy(data.indices("train"))
    train_labels = torch.from_numpy(data.labels[train_idx.numpy()])
    picks = []
    for label in fake_labels.unique().tolist():
        pool = train_idx[train_labels == label]
        picks.append(pool[torch.randint(0, len(pool), (int((fake_labels == label).sum()),), generator=g)])
    return data.tensor(torch.cat(picks).numpy())


def distances(f_fake: torch.Tensor, f_real: torch.Tensor, seed: int, suffix: str = "") -> dict:
    """FD-emoji and KID (mean and standard deviation over 100 subsets of up to 1,000 images) between two sets of
    classifier features, keyed `fd_emoji{suffix}`, `kid{suffix}`, `kid{suffix}_std`; without a suffix (the
    samples) also FD-emoji's 95% interval (`fd_interval`)."""
    kid, kid_std = kernel_distance(f_fake, f_real, seed=seed)
    out = {f"fd_emoji{suffix}": frechet_distance(f_fake, f_real), f"kid{suffix}": kid, f"kid{suffix}_std": kid_std}
    if not suffix:
        out["fd_emoji_interval"] = fd_interval(f_fake, f_real, seed=seed)
    return out


def style_agreement(clf, fake: torch.Tensor, style_ids: torch.Tensor | None, styles: list[str]) -> dict:
    """For a model with a style condition: the share of samples whose style the classifier's style head names as
    the one asked for (`style_top1`), and its chance level; {} for other models or a classifier without the head."""
    if style_ids is None or clf.style_head is None:
        return {}
    names = clf.style_names
    asked = torch.tensor([names.index(styles[i]) for i in style_ids.tolist()])
    with torch.no_grad():
        said = torch.cat([clf.style_logits(x.float()).argmax(1) for x in fake.split(512)])
    return {"style_top1": (said == asked).float().mean().item(), "style_top1_chance": 1 / len(styles)}


@torch.no_grad()
def reconstruct(tok, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """The tokenizer's finest reconstruction (its last preview row) of `images`, on the CPU."""
    device = next(tok.parameters()).device
    return torch.cat([tok.finest(x.to(device)).float().cpu() for x in images.split(batch)])


def style_ceiling(clf, tok, data, held: torch.Tensor) -> dict:
    """What a style-conditioned generator can reach at best: the style agreement of its tokenizer's reconstructions
    of the held-out emoji (each asked for its own style). A tokenizer that never saw a style blurs it away."""
    if clf.style_head is None:
        return {}
    ids = torch.from_numpy(data.style_ids[data.indices("heldout")])
    return {"style_top1_ceiling": style_agreement(clf, reconstruct(tok, held), ids, data.styles)["style_top1"]}


def heldout_loss_row(pipe, data, held: torch.Tensor) -> dict:
    """A trained class generator's training loss (`heldout_loss`, its card's `metric`) on the held-out emoji of the
    scored styles: their codes, their class and, for a model with the style condition, their style. It compares
    models of one paradigm on one tokenizer on the same styles, not paradigms with each other."""
    recipe = pipe.paradigm.recipe
    if recipe is None or pipe.conditioning != "class":
        return {}
    from ..train.generator import ClassConditions, encode_all, heldout_loss
    gen, idx = pipe.parts["generator"], data.indices("heldout")
    styles = (torch.tensor([pipe.styles.index(data.styles[k]) for k in data.style_ids[idx]])
              if pipe.manifest.get("style_condition") else None)
    conds = ClassConditions(torch.from_numpy(data.labels[idx]), gen, styles)
    codes = encode_all(pipe.parts["tokenizer"], held, recipe.encode)
    return {"heldout_loss": heldout_loss(gen, recipe.loss, codes, torch.arange(len(idx)), conds),
            "heldout_loss_metric": recipe.metric}


def samples_seen(manifest: dict, root: Path | None = None) -> list[int] | None:
    """A generator's training budget: training images seen (steps x batch) by each network it runs, from its
    manifest, or from its parts' (a composed model, e.g. the hybrid: one entry per part); None where not recorded."""
    parts = manifest.get("parts") or {}
    seen = [read_manifest(Path(root or default_root()) / n).get("metrics", {}).get("samples_seen")
            for n in parts.values()] if parts else [manifest.get("metrics", {}).get("samples_seen")]
    return None if None in seen else seen


def variant_name(name: str, controls: dict) -> str:
    return name + "".join(f" {k}={v}" for k, v in controls.items())


def eval_all(n: int = 990, seed: int = 0, root: Path | None = None, styles: list[str] | None = None,
             sweeps: bool = True, pattern: str = "*") -> list[dict]:
    """Every generator (whose name matches the glob `pattern`) at its defaults, and (`sweeps`) at its paradigm's
    sweep (e.g. masked at 4, 8, 16 steps)."""
    models = [m for m in list_models(root) if fnmatch.fnmatchcase(m.name, pattern)]
    if not models:
        raise ValueError(f"--all {pattern}: no generator's name matches (`python -m mindmap models` lists them)")
    rows = []
    for m in models:
        for controls in (paradigms.get(m.manifest["paradigm"]).sweep if sweeps else ()) or ({},):
            rows.append(eval_generator(m.name, n=n, seed=seed, root=root, controls=controls, styles=styles))
    return rows


def eval_styles(manifest: dict, styles: list[str] | None, name: str, unseen: bool = False) -> list[str]:
    """The styles an eval scores against: `styles` (a subset of the model's training styles, or with `unseen` of
    every style: a tokenizer can be asked how it reconstructs art it never learnt), else all of its own."""
    own = model_styles(manifest)
    if styles is None:
        return own
    allowed = list(STYLES) if unseen else own
    unknown = [s for s in styles if s not in allowed]
    if unknown or not styles:
        whose = "of the emoji styles" if unseen else f"of the styles {name} was trained on"
        raise ValueError(f"--styles must be a non-empty subset {whose} ({', '.join(allowed)}); "
                         f"got {', '.join(styles) or 'none'}")
    return list(styles)


def eval_generator(name: str, n: int = 990, seed: int = 0, root: Path | None = None, controls: dict | None = None,
                   dtype: str | None = None, styles: list[str] | None = None) -> dict:
    """Sample (n images over the classes, or one per held-out prompt for a text model) and score them; `dtype`:
    the generator's (see `Pipeline.from_pretrained`), named in the row. `styles`: score against the held-out emoji
    of these styles only (and a model with a style condition draws in them); default every style it learnt."""
    if not 10 <= n <= 20000:
        raise ValueError(f"--n must be an integer in [10, 20000], got {n}")
    controls = dict(controls or {})
    pipe = load_pipeline(name, root, dtype=dtype)
    resolved = pipe.controls(**controls)  # refuse a bad control before sampling anything
    scored = eval_styles(pipe.manifest, styles, name)
    data = load_emoji(pipe.manifest["image_size"], styles=scored)
    clf = load_classifier(root)
    text = pipe.conditioning == "text"
    items = heldout_prompts(data, n) if text else []
    fake_styles = None
    if text:
        fake, fake_labels, sec_per_image, last = sample_prompts(pipe, items, seed, controls)
    else:
        fake, fake_labels, sec_per_image, last, fake_styles = sample_classes(pipe, n, seed, controls, scored)
    f_fake, logits = embed(clf, fake)
    held = data.tensor(data.indices("heldout"))
    f_held = embed(clf, held)[0]
    f_train = embed(clf, training_images(data, fake_labels, seed))[0]
    halves = torch.randperm(len(f_held), generator=torch.Generator().manual_seed(seed)).chunk(2)
    agree = topk_agreement(logits, fake_labels)
    memo = nearest_distances(fake, data.tensor(data.indices("train"))) < style_threshold(pipe.manifest["image_size"])
    extra = pipe.paradigm.eval_extra(pipe, held, resolved) if pipe.paradigm.eval_extra else {}
    return {"model": variant_name(name, controls) + (f" ({dtype})" if dtype else ""), "paradigm": pipe.paradigm.name,
            "controls": controls, "styles": scored,
            "conditioning": pipe.conditioning, "n": len(fake),
            "params": sum(p.numel() for role, part in pipe.parts.items() if role != "tokenizer" for p in part.parameters()),
            "samples_seen": samples_seen(pipe.manifest, root),
            "tokens": pipe.paradigm.codes_per_image(last),
            **distances(f_fake, f_held, seed), **distances(f_train, f_held, seed, "_train"),
            **distances(*(f_held[h] for h in halves), seed, "_real"),
            "class_top1": agree["top1"], "class_top5": agree["top5"],
            **precision_recall(f_held, f_fake), "memorized": memo.float().mean().item(),
            **(retrieval(f_fake, items, data, clf) if text else {}),
            **style_agreement(clf, fake, fake_styles, pipe.styles),
            **(style_ceiling(clf, pipe.parts["tokenizer"], data, held) if fake_styles is not None else {}),
            **heldout_loss_row(pipe, data, held),
            "seconds_per_image": sec_per_image, "network_calls": last.network_calls, **extra,
            "fid_inception": None, "fid_note": inception_fid_note()}


def eval_tokenizer(name: str, root: Path | None = None, styles: list[str] | None = None) -> dict:
    """Held-out PSNR, SSIM, rFD-emoji and codebook use; PSNR of every preview row (each depth, mask ratio...);
    `styles`: on these styles' held-out emoji only (default every style it learnt)."""
    tok = load_tokenizer(name, root)
    scored = eval_styles(read_manifest(Path(root or default_root()) / name), styles, name, unseen=True)
    data = load_emoji(tok.image_size, styles=scored)
    held = data.tensor(data.indices("heldout"))
    recon = reconstruct(tok, held)
    clf = load_classifier(root)
    return {"tokenizer": name, "kind": read_manifest(Path(root or default_root()) / name).get("tokenizer", "vq"),
            "styles": scored,
            "tokens": getattr(tok, "tokens", None) if hasattr(tok, "scales") else tok.grid ** 2 * tok.config.get("depth", 1),
            **tokenizer_metrics(tok, held),
            "ssim": ssim(recon, held).mean().item(), "rfd_emoji": frechet_distance(embed(clf, recon)[0], embed(clf, held)[0]),
            **style_ceiling(clf, tok, data, held)}
