"""`mindmap train hybrid`: compose a raster and a masked checkpoint into an AR-then-masked model.

Nothing is trained: the hybrid's manifest names the two generators and their shared tokenizer in
the sibling checkpoint folders (no weights are copied), after checking that both were trained on
the same tokenizer weights and class list.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..checkpoint import load_component, read_manifest, write_manifest
from ..tokenizers.vq import VQTokenizer
from .common import command_line, write_card


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def compose_hybrid(out: Path, raster: Path, masked: Path) -> dict:
    out, raster, masked = Path(out), Path(raster), Path(masked)
    r, m = read_manifest(raster), read_manifest(masked)
    if (r.get("paradigm"), m.get("paradigm")) != ("raster", "masked"):
        raise ValueError(f"--raster must be a raster model and --masked a masked one, got "
                         f"{r.get('paradigm')!r} and {m.get('paradigm')!r}")
    if r["classes"] != m["classes"]:
        raise ValueError(f"{raster.name} and {masked.name} have different class lists")
    conditioning = r.get("conditioning", "class")
    if m.get("conditioning", "class") != conditioning:
        raise ValueError(f"{raster.name} and {masked.name} are conditioned differently (class vs text)")
    style = {k: r[k] for k in ("styles", "style_condition") if k in r}
    if style.get("style_condition") != m.get("style_condition") or (
            style.get("style_condition") and style.get("styles") != m.get("styles")):
        raise ValueError(f"{raster.name} and {masked.name} take different style conditions")
    tok_r = load_component(raster, r["components"]["tokenizer"], VQTokenizer)
    tok_m = load_component(masked, m["components"]["tokenizer"], VQTokenizer)
    if not _same_weights(tok_r, tok_m):
        raise ValueError(f"{raster.name} and {masked.name} were trained on different tokenizers")
    out.mkdir(parents=True, exist_ok=True)

    def rel(folder: Path, role: str, manifest: dict) -> str:
        return os.path.relpath(folder / manifest["components"][role], out)

    n = tok_m.grid ** 2
    manifest = {"kind": "generator", "paradigm": "hybrid", "conditioning": conditioning,
                "components": {"tokenizer": rel(masked, "tokenizer", m), "generator": rel(masked, "generator", m),
                               "raster": rel(raster, "generator", r)},
                "parts": {"raster": raster.name, "masked": masked.name}, "image_size": m["image_size"],
                "grid": m["grid"], "classes": m["classes"], **style, "defaults": dict(m.get("defaults", {})),
                **({"example_prompts": m["example_prompts"]} if "example_prompts" in m else {})}
    write_manifest(out, manifest)
    write_card(out, f"{out.name}: AR then masked (MaskGIL's unified inference)",
               f"No weights of its own: the raster model `{raster.name}` decodes the first `prefix` of the "
               f"{n} cells in raster order, then the masked model `{masked.name}` completes the rest in `steps` "
               "parallel steps. Both share the same tokenizer (checked weight by weight when this folder was "
               "written). prefix = 0 is pure masked decoding, prefix = all cells pure raster.",
               command_line(), 0, 0.0, {"raster part": raster.name, "masked part": masked.name},
               styles=style.get("styles") or ("twitter", "google"))
    return manifest
