"""Controls: what a request may set. Each is declared once, here or in its paradigm's module.

A `Control` carries its name, kind, range, default, help and label. Fields that depend on the model
(the vocabulary behind `top_k`, the grid behind `steps`, the class list) are functions of the model's
`ModelFacts`, resolved by `bind`. A paradigm lists the controls its sampler takes, named exactly as
the sampler's keyword arguments; the union over registered paradigms (`paradigms.catalog()`) gives
the CLI flags and the app's API. A bad value raises `ValueError` naming the control and what it
accepts; the CLI prints it and exits non-zero, the app shows it as an error.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable

from .sampling import CFG_SCHEDULES, SCHEDULES
from .text import MAX_PROMPT_CHARS, check_prompt
from .tokenizers.base import grid_of

MAX_SEED = 2**31 - 1
MAX_BATCH = 16
# Where a control sits: the condition (class or prompt), the request (seed, batch), a paradigm's own
# lever (steps, depth, ...) or token sampling (cfg, temperature, ...). The last two go to the sampler.
ROLES = ("condition", "request", "lever", "sampling")
SAMPLER_ROLES = ("lever", "sampling")


@dataclass(frozen=True)
class ModelFacts:
    """What a model's controls depend on, read from its manifest and its tokenizer's config (no weights)."""
    manifest: dict
    tokenizer: dict

    @property
    def classes(self) -> list[str]:
        return list(self.manifest.get("classes") or [])

    @property
    def styles(self) -> list[str]:
        """The art styles a model takes as a condition (none unless its manifest says it has a style condition)."""
        return list(self.manifest.get("styles") or []) if self.manifest.get("style_condition") else []

    @property
    def example_prompts(self) -> list[str]:
        return list(self.manifest.get("example_prompts") or [])

    @property
    def grid(self) -> int:
        return grid_of(self.tokenizer)

    @property
    def cells(self) -> int:
        return self.grid ** 2

    @property
    def vocab_size(self) -> int:
        return self.tokenizer["codebook_size"]

    @property
    def depth(self) -> int:
        return self.tokenizer["depth"]

    @property
    def mask_ratios(self) -> tuple[float, float]:
        return self.tokenizer["min_mask_ratio"], self.tokenizer["max_mask_ratio"]


@dataclass(frozen=True)
class Control:
    name: str
    kind: str                      # "int" | "float" | "choice" | "text"
    default: Any                   # a value, or a function of ModelFacts
    min: Any = None
    max: Any = None
    choices: Any = None            # a tuple, or a function of ModelFacts
    help: str = ""
    label: str = ""
    role: str = "sampling"         # one of ROLES

    def bind(self, facts: ModelFacts) -> "Control":
        """This control for one model: every field given as a function of its facts, resolved."""
        resolved = {f: getattr(self, f)(facts) for f in ("default", "min", "max", "choices")
                    if callable(getattr(self, f))}
        help_text = (facts.manifest.get("help") or {}).get(self.name)   # a model may word it for itself
        if isinstance(help_text, str):
            resolved["help"] = help_text
        return dataclasses.replace(self, **resolved) if resolved else self

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
        value = plain_scalar(value)
        bad = ValueError(f"{self.name} must be {self.allowed()}, got {value!r}")
        if self.kind == "text":
            return check_prompt(value)
        if self.kind == "choice":
            if isinstance(value, str):   # names match without regard to case or surrounding spaces
                value = {str(c).lower(): c for c in self.choices}.get(value.strip().lower(), value)
            if value not in self.choices:
                raise bad
            return value
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

    @property
    def flag(self) -> str:
        """The command-line flag (`top_k` -> `--top-k`)."""
        return "--" + self.name.replace("_", "-")

    @property
    def python_type(self) -> Callable:
        return {"int": int, "float": float}.get(self.kind, str)


def _mask_ratio_default(facts: ModelFacts) -> float:
    lo, hi = facts.mask_ratios
    return min(max(0.5, lo), hi)


def api_name(control: str) -> str:
    """A control's parameter name in the app's API (`class` is a Python keyword)."""
    return "class_name" if control == "class" else control


# --- the condition and the request: every model takes one condition, a seed and a batch ----------------
CLASS = Control("class", "choice", lambda m: m.classes[0], choices=lambda m: tuple(m.classes),
                help="emoji subcategory", label="Class", role="condition")
PROMPT = Control("prompt", "text", lambda m: (m.example_prompts or ["grinning face"])[0],
                 help="what to draw, in words (an emoji's name works best)", label="Prompt", role="condition")
ANY_STYLE = "any"
STYLE = Control("style", "choice", ANY_STYLE, choices=lambda m: (ANY_STYLE, *m.styles), role="condition", label="Style",
                help="emoji art style, beside the class ('any': the model's own pick, as without the condition)")
SEED = Control("seed", "int", 0, 0, MAX_SEED, help="same seed, same image (on one device)", label="Seed",
               role="request")
BATCH = Control("batch", "int", 1, 1, MAX_BATCH, help="images per request", label="Batch", role="request")

# --- drawing codes from logits --------------------------------------------------------------------------
CFG = Control("cfg", "float", 3.0, 1.0, 10.0, help="classifier-free guidance scale (1 = off)", label="Guidance (cfg)")
CFG_SCHEDULE = Control("cfg_schedule", "choice", "linear", choices=CFG_SCHEDULES, label="Guidance schedule",
                       help="guidance constant, or ramped from none at the first step to cfg at the last")
TEMPERATURE = Control("temperature", "float", 1.0, 0.05, 3.0, help="softmax temperature", label="Temperature")
TOP_K = Control("top_k", "int", 0, 0, lambda m: m.vocab_size, help="keep the k most likely codes (0 = all)",
                label="Top-k (0 = all)")
TOP_P = Control("top_p", "float", 1.0, 0.01, 1.0, help="nucleus: smallest set with this mass", label="Top-p")
TOKEN_SAMPLING = (CFG, TEMPERATURE, TOP_K, TOP_P)

# --- the paradigms' own levers --------------------------------------------------------------------------
STEPS = Control("steps", "int", lambda m: min(8, m.cells), 1, lambda m: m.cells, label="Sampling steps",
                help="decoding steps (network calls)", role="lever")
SCHEDULE = Control("schedule", "choice", "cosine", choices=SCHEDULES, label="Mask schedule",
                   help="share of cells still masked per step", role="lever")
RANDOMNESS = Control("randomness", "float", 4.5, 0.0, 20.0, label="Randomness (Gumbel on confidence)", role="lever",
                     help="Gumbel noise on the confidence ranking, annealed to 0 (MaskGIT's choice temperature)")
PARALLEL = (STEPS, SCHEDULE, RANDOMNESS, CFG_SCHEDULE)          # confidence-ordered parallel decoding (MaskGIT)
PREFIX = Control("prefix", "int", lambda m: m.cells // 4, 0, lambda m: m.cells, label="Raster prefix (cells)",
                 help="cells decoded in raster order first (0 = pure masked, all = pure raster)", role="lever")
DEPTH = Control("depth", "int", lambda m: m.depth, 1, lambda m: m.depth, label="Code depth", role="lever",
                help="residual codes sampled and decoded per cell (coarse to fine)")
MASK_RATIO = Control("mask_ratio", "float", _mask_ratio_default, lambda m: m.mask_ratios[0], lambda m: m.mask_ratios[1],
                     label="Mask ratio", role="lever",
                     help="share of the cells masked out (and rebuilt by the decoder): fewer pairs, faster")
JACOBI_WINDOW = Control("jacobi_window", "int", 1, 1, lambda m: min(32, m.cells), label="Jacobi window (SJD)",
                        role="lever", help="draft codes verified per network call by speculative Jacobi decoding "
                                           "(1 = off: one code per call); the images keep their distribution")
ZIP_WINDOW = Control("zip_window", "int", 0, 0, lambda m: m.grid - 1, label="Next-row overlap (ZipAR)", role="lever",
                     help="codes a row must have before the row below starts, one code per active row per network "
                          "call (0 = off); an approximation: a row sees the row above only as far as it is decided")
DIFFUSION_STEPS = Control("diffusion_steps", "int", 25, 1, 250, label="Diffusion steps (per AR step)", role="lever",
                          help="DDIM steps of the head per AR step")


# The order the shared controls are shown in (CLI help, the app's widgets, the API's parameters): each paradigm's
# own levers first, then token sampling. A control only one paradigm declares comes after these, by role.
DISPLAY_ORDER = (JACOBI_WINDOW, ZIP_WINDOW, DEPTH, MASK_RATIO, PREFIX, STEPS, DIFFUSION_STEPS, SCHEDULE, RANDOMNESS,
                 CFG, CFG_SCHEDULE, TEMPERATURE, TOP_K, TOP_P)


def with_defaults(specs: list[Control], defaults: dict) -> list[Control]:
    """Replace spec defaults by a model's own (its manifest's `defaults`), each validated by its spec."""
    by_name = {s.name: s for s in specs}
    unknown = sorted(set(defaults) - set(by_name))
    if unknown:
        raise ValueError(f"default for unknown control {unknown[0]!r}")
    return [dataclasses.replace(s, default=s.validate(defaults[s.name])) if s.name in defaults else s for s in specs]


def plain_scalar(value):
    """A numpy scalar or a 0-d array or tensor as the Python number it holds (validated like one); else unchanged."""
    if getattr(value, "ndim", None) == 0 and callable(getattr(value, "item", None)) and not isinstance(value, str):
        return value.item()
    return value


def check_preview_every(value) -> int:
    """The API's `preview_every`: steps between previews, an integer >= 0 (0: the final Frame only)."""
    value = plain_scalar(value)
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or value != int(value) or value < 0):
        raise ValueError(f"preview_every must be an integer >= 0 (0 = the final image only), got {value!r}")
    return int(value)


@dataclass(frozen=True)
class Request:
    """One request, validated against a model's controls: every control's value, defaults filled in."""
    values: dict
    roles: dict                    # control name -> its role

    @classmethod
    def resolve(cls, specs: list[Control], values: dict) -> "Request":
        """Validate `values` (None = the model's default) against `specs`; a control the model does not take raises."""
        known = {s.name: s for s in specs}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown control {unknown[0]!r} for this model; it takes: {', '.join(known)}")
        return cls({name: spec.validate(values.get(name)) for name, spec in known.items()},
                   {name: spec.role for name, spec in known.items()})

    @property
    def seed(self) -> int:
        return self.values["seed"]

    @property
    def batch(self) -> int:
        return self.values["batch"]

    @property
    def class_name(self) -> str | None:
        return self.values.get("class")

    @property
    def prompt(self) -> str | None:
        return self.values.get("prompt")

    @property
    def style(self) -> str | None:
        """The requested style; None for 'any' and for a model without a style condition."""
        style = self.values.get("style")
        return None if style in (None, ANY_STYLE) else style

    @property
    def sampling(self) -> dict:
        """The sampler's keyword arguments: the paradigm's levers and its token-sampling controls."""
        return {k: v for k, v in self.values.items() if self.roles[k] in SAMPLER_ROLES}
