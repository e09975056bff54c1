"""Controls: what a request may set, each with its range; one validated `Controls` per request.

A bad value raises `ValueError` naming the control and what it accepts; the CLI prints it and exits
non-zero, the app shows it as an error.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any

from .sampling import CFG_SCHEDULES, SCHEDULES
from .text import MAX_PROMPT_CHARS, check_prompt

MAX_SEED = 2**31 - 1
MAX_BATCH = 16


@dataclass(frozen=True)
class Control:
    name: str
    kind: str                      # "int" | "float" | "choice" | "text"
    default: Any
    min: float | None = None
    max: float | None = None
    choices: tuple | None = None
    help: str = ""

    def allowed(self) -> str:
        if self.kind == "text":
            return f"a non-empty text of at most {MAX_PROMPT_CHARS} characters"
        if self.kind == "choice":
            shown = ", ".join(map(str, self.choices[:6])) + (", ..." if len(self.choices) > 6 else "")
            return f"one of {len(self.choices)} choices ({shown})"
        return f"{'an integer' if self.kind == 'int' else 'a number'} in [{self.min}, {self.max}]"

    def validate(self, value):
        if value is None:
            return self.default
        bad = ValueError(f"{self.name} must be {self.allowed()}, got {value!r}")
        if self.kind == "text":
            return check_prompt(value)
        if self.kind == "choice":
            key = value.strip().lower() if isinstance(value, str) else value
            if key not in self.choices:
                raise bad
            return key
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        if self.kind == "int":
            if isinstance(value, float) and not value.is_integer():
                raise bad
            value = int(value)
        elif not math.isfinite(value):
            raise bad
        if not self.min <= value <= self.max:
            raise bad
        return value if self.kind == "int" else float(value)

    def describe(self) -> dict:
        d = {"type": self.kind, "default": self.default, "help": self.help}
        if self.kind == "choice":
            d["choices"] = list(self.choices)
        elif self.kind == "text":
            d["max_length"] = MAX_PROMPT_CHARS
        else:
            d.update(min=self.min, max=self.max)
        return d


def class_control(classes: list[str]) -> Control:
    return Control("class", "choice", classes[0], choices=tuple(classes), help="emoji subcategory")


def prompt_control(default: str) -> Control:
    return Control("prompt", "text", default, help="what to draw, in words (an emoji's name works best)")


def common_controls() -> list[Control]:
    return [Control("seed", "int", 0, 0, MAX_SEED, help="same seed, same image (on one device)"),
            Control("batch", "int", 1, 1, MAX_BATCH, help="images per request")]


def token_sampling_controls(vocab_size: int, cfg: float = 3.0) -> list[Control]:
    """The controls of any sampler that draws codes from logits."""
    return [Control("cfg", "float", cfg, 1.0, 10.0, help="classifier-free guidance scale (1 = off)"),
            Control("temperature", "float", 1.0, 0.05, 3.0, help="softmax temperature"),
            Control("top_k", "int", 0, 0, vocab_size, help="keep the k most likely codes (0 = all)"),
            Control("top_p", "float", 1.0, 0.01, 1.0, help="nucleus: smallest set with this mass")]


def parallel_controls(n_cells: int, steps: int = 8) -> list[Control]:
    """The controls of confidence-ordered parallel decoding (MaskGIT)."""
    return [Control("steps", "int", min(steps, n_cells), 1, n_cells, help="decoding steps (network calls)"),
            Control("schedule", "choice", "cosine", choices=SCHEDULES, help="share of cells still masked per step"),
            Control("randomness", "float", 4.5, 0.0, 20.0,
                    help="Gumbel noise on the confidence ranking, annealed to 0 (MaskGIT's choice temperature)"),
            cfg_schedule_control()]


def cfg_schedule_control() -> Control:
    return Control("cfg_schedule", "choice", "linear", choices=CFG_SCHEDULES,
                   help="guidance constant, or ramped from none at the first step to cfg at the last")


def prefix_control(n_cells: int, default: int) -> Control:
    return Control("prefix", "int", default, 0, n_cells,
                   help="cells decoded in raster order first (0 = pure masked, all = pure raster)")


def depth_control(depth: int) -> Control:
    return Control("depth", "int", depth, 1, depth, help="residual codes sampled and decoded per cell (coarse to fine)")


def mask_ratio_control(lo: float, hi: float, default: float = 0.5) -> Control:
    return Control("mask_ratio", "float", min(max(default, lo), hi), lo, hi,
                   help="share of the cells masked out (and rebuilt by the decoder): fewer pairs, faster")


def mar_controls(n_cells: int, steps: int = 16, diffusion_steps: int = 25) -> list[Control]:
    """MAR's own levers: AR steps (transformer calls) against diffusion steps (head calls per step)."""
    return [Control("cfg", "float", 3.0, 1.0, 10.0, help="classifier-free guidance scale on the head's noise (1 = off)"),
            cfg_schedule_control(),
            Control("temperature", "float", 1.0, 0.05, 3.0, help="scale of the diffusion sampling noise"),
            Control("steps", "int", min(steps, n_cells), 1, n_cells, help="AR steps (transformer calls), cosine"),
            Control("diffusion_steps", "int", diffusion_steps, 1, 250, help="DDIM steps of the head per AR step")]


def with_defaults(specs: list[Control], defaults: dict) -> list[Control]:
    """Replace spec defaults by a model's own (its manifest's `defaults`), each validated by its spec."""
    by_name = {s.name: s for s in specs}
    unknown = sorted(set(defaults) - set(by_name))
    if unknown:
        raise ValueError(f"default for unknown control {unknown[0]!r}")
    return [dataclasses.replace(s, default=s.validate(defaults[s.name])) if s.name in defaults else s for s in specs]


@dataclass(frozen=True)
class Controls:
    """One request, validated. Fields a paradigm does not use stay None."""
    class_name: str | None = None
    label: int | None = None
    prompt: str | None = None
    seed: int = 0
    batch: int = 1
    cfg: float | None = None
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    steps: int | None = None
    schedule: str | None = None
    randomness: float | None = None
    cfg_schedule: str | None = None
    prefix: int | None = None
    depth: int | None = None
    mask_ratio: float | None = None
    diffusion_steps: int | None = None

    @classmethod
    def resolve(cls, specs: list[Control], values: dict, classes: list[str] | None = None) -> "Controls":
        """Validate `values` (None = default) against `specs`; unknown names raise."""
        known = {s.name: s for s in specs}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown control {unknown[0]!r}; this model takes: {', '.join(known)}")
        out = {name: spec.validate(values.get(name)) for name, spec in known.items()}
        if "class" in out:
            out["class_name"] = out.pop("class")
            out["label"] = classes.index(out["class_name"])
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in out.items() if k in names})
