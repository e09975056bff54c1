"""The sampling-control flags every CLI command shares (`--cfg`, `--steps`, `--prefix`, ...), one per control
in the paradigms' catalog.

A flag left unset takes the model's default; a flag the model does not take, or a value out of its
range, is refused by the pipeline with a message naming the control.
"""
from __future__ import annotations

import argparse



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


def parse_sweep(text: str | None) -> list[dict]:
    """`steps=4,8,16` -> [{"steps": 4}, {"steps": 8}, {"steps": 16}]; None -> []."""
    if not text:
        return []
    known = sampling_controls()
    name, sep, values = text.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or name not in known or not values.strip():
        raise ValueError(f"--sweep must look like CONTROL=V1,V2,... with CONTROL one of {', '.join(known)}; "
                         f"got {text!r}")
    kind = known[name].python_type
    try:
        return [{name: kind(v.strip())} for v in values.split(",")]
    except ValueError:
        raise ValueError(f"--sweep {name} values must be {kind.__name__}s, got {values!r}") from None
