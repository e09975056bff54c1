"""The sampling-control flags every CLI command shares (`--cfg`, `--steps`, `--prefix`, ...), one per control
in the paradigms' catalog.

A flag left unset takes the model's default; a flag the model does not take, or a value out of its
range, is refused by the pipeline with a message naming the control.
"""
from __future__ import annotations

import argparse
import itertools



def sampling_controls() -> dict:
    """Every control some paradigm's sampler takes, by name (the condition, seed and batch have flags of their own)."""
    from .controls import SAMPLER_ROLES
    from .paradigms import catalog                     # imports every model: only for the commands that sample
    return {c.name: c for c in catalog() if c.role in SAMPLER_ROLES}


def add_sampling_flags(parser: argparse.ArgumentParser):
    group = parser.add_argument_group("sampling controls (default: the model's; `models --json` lists each range)")
    for c in sampling_controls().values():
        kind = c.python_type
        group.add_argument(c.flag, dest=c.name, type=kind, metavar=kind.__name__.upper(), help=c.help)


def sampling_values(args: argparse.Namespace) -> dict:
    """The controls given on the command line, by control name."""
    return {name: getattr(args, name) for name in sampling_controls() if getattr(args, name, None) is not None}


def parse_sweep(texts: str | list[str] | None) -> list[dict]:
    """The rows of one or more `--sweep`s, in order: `steps=4,8,16` -> [{"steps": 4}, {"steps": 8}, {"steps": 16}];
    several assignments in one sweep, space-separated, give every combination: `zip_window=2,4 jacobi_window=8`
    -> [{"zip_window": 2, "jacobi_window": 8}, {"zip_window": 4, "jacobi_window": 8}]; None -> []."""
    if not texts:
        return []
    rows = []
    for text in [texts] if isinstance(texts, str) else texts:
        axes = [_sweep_axis(part, text) for part in text.split()] or [_sweep_axis("", text)]
        rows += [dict(combo) for combo in itertools.product(*axes)]
    return rows


def _sweep_axis(part: str, text: str) -> list[tuple]:
    """`steps=4,8` -> [("steps", 4), ("steps", 8)], each value checked against the control's type."""
    known = sampling_controls()
    name, sep, values = part.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or name not in known or not values.strip():
        raise ValueError(f"--sweep must look like CONTROL=V1,V2,... (several, space-separated, for every combination) "
                         f"with CONTROL one of {', '.join(known)}; got {text!r}")
    kind = known[name].python_type
    try:
        return [(name, kind(v.strip())) for v in values.split(",")]
    except ValueError:
        raise ValueError(f"--sweep {name} values must be {kind.__name__}s, got {values!r}") from None
