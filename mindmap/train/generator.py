"""`mindmap train generator`: any paradigm's generator with a training recipe, on pre-computed codes of emoji.

The paradigm's descriptor (`mindmap.paradigms`) gives the model class, its size presets, what the
tokenizer's codes become for training (`Recipe.encode`) and the loss.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from .. import paradigms
from ..checkpoint import copy_component, load_component, read_manifest, save_component, write_manifest
from ..data import load_emoji
from ..nn import pack_labels
from ..paradigms.base import Recipe, token_codes
from ..tokenizers import TOKENIZERS
from .captions import CaptionTable
from .common import Trainer, calibrated_steps, time_steps, command_line, write_card

logger = logging.getLogger(__name__)


@torch.no_grad()
def encode_all(tokenizer, images: torch.Tensor, encode=token_codes, batch: int = 512) -> torch.Tensor:
    """Every image's tokens, encoded on the tokenizer's device, returned on the CPU."""
    device = next(tokenizer.parameters()).device
    return torch.cat([encode(tokenizer, images[i:i + batch].to(device)).cpu() for i in range(0, len(images), batch)])


def drop_labels(labels: torch.Tensor, p: float, null: int, g: torch.Generator) -> torch.Tensor:
    """Replace a share `p` of labels by the null class (classifier-free guidance training)."""
    drop = torch.rand(labels.shape, generator=g) < p
    return labels.masked_fill(drop.to(labels.device), null)


class ClassConditions:
    """Class labels; in training a share `p` become the null class (classifier-free guidance). With `styles` (each
    record's style id) the labels carry the style too (`pack_labels`): a dropped class drops its style as well
    (the unconditional half of CFG is 'any class, any style'), and a share `p` of the rest keep their class in
    'any style', so the style can be left out at sampling time."""

    def __init__(self, labels: torch.Tensor, model, styles: torch.Tensor | None = None):
        self.labels, self.model, self.styles = labels, model, styles

    def train(self, rows: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        p, null = self.model.config.class_dropout, self.model.null_class
        if self.styles is None:
            return drop_labels(self.labels[rows], p, null, g)
        any_style = torch.rand(rows.shape, generator=g) < p
        styles = self.styles[rows].masked_fill(any_style, -1)
        return drop_labels(pack_labels(self.labels[rows], styles, null), p, null, g)

    def eval(self, rows: torch.Tensor) -> torch.Tensor:
        return pack_labels(self.labels[rows], None if self.styles is None else self.styles[rows],
                           self.model.null_class)


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
    """Mean of `loss` over records `rows` (their codes, their plain condition), with fixed random draws, on the
    model's device."""
    g, total = torch.Generator().manual_seed(seed), 0.0
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    for part in rows.split(batch):
        total += loss(model, codes[part].to(device), conds.eval(part).to(device), g).item() * len(part)
    model.train(was_training)
    return total / len(rows)


class LearningCurve:
    """Every `every` steps (and at the last), the loss on the held-out records and on as many training records (a
    fixed random draw across every style), appended to `run_dir/heldout.csv` with the training samples seen so far
    (steps x batch). `final` gives the card's pair, the last step's row where the curve measured it."""

    def __init__(self, trainer, loss, codes: torch.Tensor, held: torch.Tensor, train: torch.Tensor, conds,
                 batch: int, every: int):
        self.trainer, self.loss, self.codes, self.conds, self.batch, self.every = trainer, loss, codes, conds, batch, every
        self.held, self.train = held, train[torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
                                            [:len(held)]]
        self.path = trainer.run_dir / "heldout.csv"
        self.last = None                     # (step, held-out, train) of the latest row this process measured

    def measure(self, model) -> tuple[float, float]:
        return tuple(heldout_loss(model, self.loss, self.codes, rows, self.conds) for rows in (self.held, self.train))

    def final(self, model) -> tuple[float, float]:
        """(held-out, train) loss of the finished model."""
        if self.last is not None and self.last[0] == self.trainer.steps:
            return self.last[1:]
        return self.measure(model)

    def __call__(self, step: int):
        done = step + 1
        if not self.every or not self.trainer.is_main or (done % self.every and done != self.trainer.steps):
            return
        self.last = (done, *self.measure(self.trainer.unwrapped()))
        row = [done, done * self.batch, *self.last[1:]]
        if self.path.exists():               # a resumed run: drop what the saved state had not reached
            lines = [ln for ln in self.path.read_text().splitlines()[1:] if int(ln.split(",")[0]) < done]
        else:
            lines = []
        lines.append(",".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in row))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("step,samples_seen,heldout,train\n" + "\n".join(lines) + "\n")

    def export(self, out: Path):
        if self.path.exists():
            (Path(out) / "heldout.csv").write_bytes(self.path.read_bytes())


def load_codes(tok_dir: Path, flip: bool, encode=token_codes, styles=None, device=None):
    """The tokenizer (on the CPU), the emoji data (these styles; None: all) and its codes, encoded on `device`:
    (tok, data, views (V, M, ...), labels (M,))."""
    tok_manifest = read_manifest(tok_dir)
    tok = load_component(tok_dir, "tokenizer", TOKENIZERS[tok_manifest.get("tokenizer", "vq")]).to(device or "cpu")
    data = load_emoji(tok.image_size, styles=styles)
    if data.classes != tok_manifest["classes"]:
        raise ValueError(f"{tok_dir}: its class list differs from the emoji data's; rebuild one of them")
    images = data.tensor()
    codes = encode_all(tok, images, encode)
    # Mirrored emoji are still emoji of their class: twice the code sequences, much less memorisation.
    views = torch.stack([codes, encode_all(tok, images.flip(-1), encode)]) if flip else codes[None]
    return tok.cpu(), data, views, torch.from_numpy(data.labels)


def train_generator(out: Path, tokenizer: Path, paradigm: str = "raster", steps: int = 4000, batch: int = 64,
                    lr: float = 1e-3, preset: str = "small", dropout: float = 0.1, flip: bool = True, seed: int = 0,
                    conditioning: str = "class", run_dir: Path | None = None, cpu: bool = False,
                    init: Path | None = None, mixed_precision: str = "no", styles=None,
                    style_condition: bool = True, calibrate: tuple | None = None, curve_every: int = 0,
                    compile: bool = False) -> dict:
    """`styles`: the emoji styles to train on (None: every style built); `style_condition`: a class model takes
    the style as a condition beside the class (needs two styles or more). `calibrate`: (sync folder, name,
    processes, seconds): `steps` set by `calibrated_steps` for a suite phase sharing one device. `curve_every`:
    the held-out loss every so many steps (the learning curve, `heldout.csv` beside the losses; 0: off).
    `compile`: the training forward passes through `torch.compile` (`Trainer`)."""
    spec = trainable(paradigm, preset)
    recipe = spec.recipe
    if conditioning not in ("class", "text") or (conditioning == "text" and not spec.text):
        texts = ", ".join(p.name for p in paradigms.PARADIGMS.values() if p.text and p.recipe)
        raise ValueError(f"conditioning must be 'class' (any paradigm) or 'text' ({texts}), got "
                         f"{conditioning!r} for {paradigm}")
    if tokenizer is None:
        raise ValueError("--tokenizer is required: the tokenizer checkpoint folder the generator models")
    out, tok_dir = Path(out), Path(tokenizer)
    modelled_kind(spec, tok_dir)
    device = torch.device("cuda" if torch.cuda.is_available() and not cpu else "cpu")
    tok, data, views, labels = load_codes(tok_dir, flip, recipe.encode, styles, device)
    style_condition = style_condition and conditioning == "class" and len(data.styles) > 1
    train_idx = torch.from_numpy(data.indices("train"))
    held_idx = torch.from_numpy(data.indices("heldout"))

    torch.manual_seed(seed)
    model_cls = spec.components["generator"]
    model = new_generator(spec, tok, data, preset, dropout, conditioning, style_condition)
    text = conditioning == "text"
    warm = warm_start(model, Path(init), model_cls, paradigm) if init is not None else None
    conds = (TextConditions(data.records, model) if text else
             ClassConditions(labels, model, torch.from_numpy(data.style_ids) if style_condition else None))
    trainer = Trainer(model, steps, lr, run_dir or Path("runs") / out.name, weight_decay=0.05, cpu=cpu,
                      mixed_precision=mixed_precision, defer=calibrate is not None, compile=compile)
    if calibrate is not None:                   # the suite's shared device: steps from the slowest model's step
        probe_g, probe_rows = torch.Generator().manual_seed(seed), train_idx[:batch]
        probe_codes, probe_cond = views[0, probe_rows].to(trainer.device), conds.eval(probe_rows).to(trainer.device)
        steps = calibrated_steps(*calibrate, probe=lambda: time_steps(
            model, lambda m, *_: recipe.loss(m, probe_codes, probe_cond, probe_g), trainer.device, mixed_precision))
        trainer.plan(steps)
    g = trainer.seeded(seed + 1)

    def loss_fn(step):
        idx = trainer.batch(train_idx, batch, seed, step)
        view = torch.randint(0, len(views), (len(idx),), generator=g)
        cond = conds.train(idx, g).to(trainer.device)
        value = recipe.loss(trainer.model, views[view, idx].to(trainer.device), cond, g)
        return value, {"loss": value.item()}

    curve = LearningCurve(trainer, recipe.loss, views[0], held_idx, train_idx, conds, batch, curve_every)
    seconds = trainer.run(loss_fn, desc=f"{paradigm} generator", every=curve)
    if not trainer.is_main:
        return {}
    gen = trainer.unwrapped().eval()
    held_ce, train_ce = curve.final(gen)
    metrics = {"heldout_ce": held_ce, "train_ce": train_ce,
               "params": sum(p.numel() for p in gen.parameters()), "samples_seen": steps * batch}
    gen = gen.cpu()
    logger.info("metrics: %s", metrics)
    save_component(gen, out / "generator", half=True)
    trainer.export_losses(out)
    curve.export(out)
    copy_component(tok_dir / "tokenizer", out / "tokenizer")
    write_manifest(out, {"kind": "generator", "paradigm": paradigm, "conditioning": conditioning,
                         "components": {"tokenizer": "tokenizer", "generator": "generator"},
                         "tokenizer_source": tok_dir.name, "image_size": tok.image_size, "grid": tok.grid,
                         "classes": data.classes, "styles": data.styles, "style_condition": style_condition,
                         "metrics": metrics, **example_prompts(data, conditioning)})
    write_card(out, f"{out.name}: {recipe.title}" + (", text prompts" if text else ""),
               card_summary(recipe, preset, metrics, tok, tok_dir, model, dropout, flip)
               + (f" Weights {warm}." if warm else ""), command_line(), steps,
               seconds, {f"held-out {recipe.metric}": metrics["heldout_ce"], f"train {recipe.metric} (same count)":
                         metrics["train_ce"], "parameters": metrics["params"]}, styles=data.styles,
               samples=steps * batch)
    return metrics


def trainable(paradigm: str, preset: str):
    """The descriptor of `paradigm`, checked to have a training recipe with the size preset `preset`."""
    spec = paradigms.get(paradigm)
    if spec.recipe is None:
        names = ", ".join(p.name for p in paradigms.PARADIGMS.values() if p.recipe)
        raise ValueError(f"paradigm must be one of {names} (a {paradigm} model is composed, not trained), "
                         f"got {paradigm!r}")
    if preset not in spec.recipe.presets:
        raise ValueError(f"preset must be one of {list(spec.recipe.presets)}, got {preset!r}")
    return spec


def modelled_kind(spec, tok_dir: Path) -> str:
    """The kind of the tokenizer in `tok_dir`, checked to be the one `spec`'s generators model."""
    kind = read_manifest(tok_dir).get("tokenizer", "vq")
    if kind != spec.tokenizer:
        raise ValueError(f"{tok_dir}: a {spec.name} generator models a {spec.tokenizer} tokenizer, this one is {kind}")
    return kind


def new_generator(spec, tok, data, preset: str, dropout: float = 0.1, conditioning: str = "class",
                  style_condition: bool = True):
    """A freshly initialised generator of paradigm `spec` at `preset`, over `tok`'s codes and `data`'s classes (and
    its styles, with `style_condition`), from torch's global seed."""
    recipe = spec.recipe
    alphabet = {"vocab_size": tok.vocab_size} if hasattr(tok, "vocab_size") else {}
    text = {"conditioning": "text"} if conditioning == "text" else {}
    styled = {"num_styles": len(data.styles)} if style_condition else {}
    return spec.components["generator"](num_classes=len(data.classes), grid=tok.grid, dropout=dropout, **alphabet,
                                        **text, **styled, **recipe.extra(tok), **recipe.presets[preset])


def train_step_seconds(paradigm: str, tokenizer: Path, preset: str = "arena", batch: int = 256,
                       mixed_precision: str = "no", steps: int = 5, warmup: int = 2, compile: bool = False,
                       seed: int = 0, cpu: bool = False) -> list[float]:
    """The seconds of each of `steps` training steps (after `warmup`) of a fresh class-conditioned `paradigm`
    generator at `preset`, on `tokenizer`'s codes of `batch` training emoji in every style, as `train generator`
    trains it (the style condition, its dropout, the same loss); `compile`: through torch.compile."""
    spec = trainable(paradigm, preset)
    tok_dir = Path(tokenizer)
    kind = modelled_kind(spec, tok_dir)
    device = torch.device("cuda" if torch.cuda.is_available() and not cpu else "cpu")
    tok = load_component(tok_dir, "tokenizer", TOKENIZERS[kind]).to(device)
    data = load_emoji(tok.image_size)
    rows = torch.from_numpy(data.indices("train"))[:batch]
    with torch.no_grad():
        codes = spec.recipe.encode(tok, data.tensor(rows.numpy()).to(device))
    styled = len(data.styles) > 1
    torch.manual_seed(seed)
    model = new_generator(spec, tok, data, preset, style_condition=styled)
    conds = ClassConditions(torch.from_numpy(data.labels), model, torch.from_numpy(data.style_ids) if styled else None)
    g = torch.Generator().manual_seed(seed)
    times = []
    time_steps(model, lambda m, *_: spec.recipe.loss(m, codes, conds.train(rows, g).to(device), g), device,
               mixed_precision, steps=steps, warmup=warmup, compile=compile, record=times)
    return times


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
    styles = model.config.get("num_styles", 0)
    if styles:
        cond += (f"; the art style ({styles} styles) as a condition beside the class, its embedding added to the "
                 f"class's, dropped to 'any style' with the class and for a share {model.config.class_dropout} of "
                 f"the rest")
    return (f"{recipe.summary}. {metrics['params'] / 1e6:.2f}M parameters, preset `{preset}` ({recipe.presets[preset]}), "
            f"over the {tok.grid}x{tok.grid} grid of the `{tok_dir.name}` tokenizer (copied into `tokenizer/`); {cond}; "
            f"residual dropout {dropout}" + (", horizontal-flip augmentation" if flip else "")
            + ". Weights stored in float16, computed in float32.")
