"""The Paradigm descriptor: what makes a paradigm a paradigm, declared once and registered once.

A paradigm is its tokenizer kind, its generator class(es), its sampler, the controls the sampler takes,
its benchmark's naive baseline, the picture particular to it (`View`), its evaluation sweep, its training
recipe and whether it takes text prompts. The pipeline, the CLI, the app, `bench`, `eval`, `figures` and
`train` all read it; none keeps a table of its own. `register` checks that the sampler's keyword
arguments are exactly the declared controls, so the two cannot drift apart.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

from ..controls import BATCH, CLASS, DISPLAY_ORDER, PROMPT, ROLES, SAMPLER_ROLES, SEED, STYLE, Control, ModelFacts
from ..frames import Frame, decided_cells


def token_codes(tokenizer, images):
    """Images -> flattened codes (B, grid*grid[*depth]) in raster order (a cell's depths together)."""
    return tokenizer.encode(images).flatten(1)


def every_step(cells: int) -> int:
    return 1


def every_sixteenth(cells: int) -> int:
    return max(1, cells // 16)


@dataclass(frozen=True)
class View:
    """The picture particular to a paradigm, drawn from a Frame: the app's caption and the renderer.

    render(frame, index, width): `width` None gives the app's size; an int fits it under a panel.
    """
    label: str
    render: Callable[[Frame, int, int | None], Any]


@dataclass(frozen=True)
class Recipe:
    """How `train generator` trains the paradigm's generator on its tokenizer's codes of the emoji."""
    presets: dict                        # size name -> model arguments
    loss: Callable                       # (model, batch of `encode`'s rows, condition, generator) -> loss
    title: str                           # the model card's title
    summary: str                         # what the card says of the model
    encode: Callable = token_codes       # (tokenizer, images) -> what `loss` trains on
    extra: Callable = lambda tok: {}     # model arguments that come from the tokenizer
    metric: str = "CE (nats/code)"       # what `loss` measures, for the model card


@dataclass(frozen=True)
class Paradigm:
    name: str
    anchor: str                                         # the method it follows (LlamaGen, MaskGIT, ...)
    tokenizer: str                                      # the tokenizer kind it models (`tokenizers.TOKENIZERS`)
    components: dict                                    # manifest role -> ModelMixin class (besides the tokenizer)
    sampler: Callable                                   # (*models, tokenizer, cond, generator, *, controls...)
    controls: tuple[Control, ...]                       # the sampler's own keyword arguments, in display order
    models: tuple[str, ...] = ("generator",)            # the components handed to the sampler, in order
    cached: bool = False                                # the sampler has a KV cache (`cached=False`: naive)
    preview_every: Callable[[int], int] = every_step    # grid cells -> default steps between previews
    naive: Callable | None = None                       # pipe -> the bench baseline's stream() arguments
    view: View | None = None
    sweep: tuple[dict, ...] = ()                        # what `eval --all` measures besides the defaults
    recipe: Recipe | None = None                        # None: not trained by `train generator`
    text: bool = False                                  # takes text prompts as well as classes
    demo_class: str = "face-smiling"                    # the class of the README's decoding GIF
    codes_per_image: Callable[[Frame], int] = decided_cells
    eval_extra: Callable | None = None                  # (pipe, held-out images, Request) -> more eval columns
    variants: dict = field(default_factory=dict)        # role -> other classes a checkpoint may name (published)

    def specs(self, facts: ModelFacts, conditioning: str = "class") -> list[Control]:
        """A model's controls: its condition (class or prompt), seed, batch, then the sampler's, fitted to it."""
        condition = (PROMPT,) if conditioning == "text" else (CLASS, STYLE) if facts.styles else (CLASS,)
        return [c.bind(facts) for c in (*condition, SEED, BATCH, *self.controls)]

    def baseline(self, pipe) -> dict:
        """stream() arguments of the naive baseline `bench` measures beside the real sampler."""
        if self.naive is not None:
            return self.naive(pipe)
        if self.cached:
            return {"cached": False}
        raise ValueError(f"a {self.name} model has no naive baseline")


PARADIGMS: dict[str, Paradigm] = {}


def register(paradigm: Paradigm) -> Paradigm:
    """Add a paradigm; its sampler must take exactly its controls (plus preview_every, and cached if it caches)."""
    if paradigm.name in PARADIGMS:
        raise ValueError(f"paradigm {paradigm.name!r} is registered twice")
    params = inspect.signature(paradigm.sampler).parameters
    takes = {n for n, p in params.items() if p.kind is p.KEYWORD_ONLY}
    wants = {c.name for c in paradigm.controls} | {"preview_every"} | ({"cached"} if paradigm.cached else set())
    if takes != wants:
        raise TypeError(f"{paradigm.name}: {paradigm.sampler.__name__} takes keyword arguments {sorted(takes)}, "
                        f"its controls say {sorted(wants)}")
    for c in paradigm.controls:
        if c.role not in SAMPLER_ROLES:
            raise ValueError(f"{paradigm.name}: control {c.name!r} has role {c.role!r}, not one of {SAMPLER_ROLES}")
    known = {c.name: c for c in catalog()}
    for c in paradigm.controls:
        if c.name in known and (known[c.name].kind, known[c.name].role) != (c.kind, c.role):
            raise ValueError(f"{paradigm.name}: control {c.name!r} is declared elsewhere as a "
                             f"{known[c.name].role} {known[c.name].kind}, here as a {c.role} {c.kind}")
    PARADIGMS[paradigm.name] = paradigm
    return paradigm


def get(name: str) -> Paradigm:
    if name not in PARADIGMS:
        raise ValueError(f"paradigm must be one of {', '.join(PARADIGMS)}, got {name!r}")
    return PARADIGMS[name]


def catalog() -> list[Control]:
    """Every control any registered paradigm takes, once by name (its first declaration): the condition and the
    request, then the shared controls in `DISPLAY_ORDER`, then any other a paradigm declares, by role. Fixed by
    the code, never by the checkpoints installed: the CLI's flags and the app's widgets and API are built from it."""
    first: dict[str, Control] = {}
    for c in (c for p in PARADIGMS.values() for c in p.controls):
        first.setdefault(c.name, c)
    shared = [first.pop(c.name) for c in DISPLAY_ORDER if c.name in first]
    return [CLASS, PROMPT, STYLE, SEED, BATCH, *shared, *sorted(first.values(), key=lambda c: ROLES.index(c.role))]
