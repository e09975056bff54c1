"""The sampling-control flags every CLI command shares (`--cfg`, `--steps`, `--prefix`, ...).

A flag left unset takes the model's default; a flag the model does not take, or a value out of its
range, is refused by the pipeline with a message naming the control.
"""
from __future__ import annotations

import argparse

# control name -> type; the flag is the name with dashes (`top_k` -> `--top-k`)
SAMPLING = {"cfg": float, "temperature": float, "top_k": int, "top_p": float, "steps": int, "schedule": str,
            "randomness": float, "cfg_schedule": str, "prefix": int, "depth": int,
            "mask_ratio": float, "diffusion_steps": int}


def add_sampling_flags(parser: argparse.ArgumentParser):
    group = parser.add_argument_group("sampling controls (default: the model's; `models --json` lists each range)")
    for name, kind in SAMPLING.items():
        group.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, metavar=kind.__name__.upper())


def sampling_values(args: argparse.Namespace) -> dict:
    """The controls given on the command line, by control name."""
    return {name: getattr(args, name) for name in SAMPLING if getattr(args, name, None) is not None}


def parse_sweep(text: str | None) -> list[dict]:
    """`steps=4,8,16` -> [{"steps": 4}, {"steps": 8}, {"steps": 16}]; None -> []."""
    if not text:
        return []
    name, sep, values = text.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or name not in SAMPLING or not values.strip():
        raise ValueError(f"--sweep must look like CONTROL=V1,V2,... with CONTROL one of {', '.join(SAMPLING)}; "
                         f"got {text!r}")
    try:
        return [{name: SAMPLING[name](v.strip())} for v in values.split(",")]
    except ValueError:
        raise ValueError(f"--sweep {name} values must be {SAMPLING[name].__name__}s, got {values!r}") from None
