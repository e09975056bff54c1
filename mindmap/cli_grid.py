"""`mindmap grid`: a labelled sample grid (rows = classes, columns = seeds) for READMEs and comparisons."""
from __future__ import annotations

from .cli_controls import sampling_values
from .cli_generate import check_target, written
from .controls import MAX_BATCH
from .registry import load_pipeline
from .viz import grid_image

MAX_CELLS = 256


def grid(args) -> dict:
    classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    if not classes:
        raise ValueError("--classes must name at least one class, comma-separated")
    if not 1 <= args.seeds <= MAX_BATCH or len(classes) * args.seeds > MAX_CELLS:
        raise ValueError(f"--seeds must be in [1, {MAX_BATCH}] and classes x seeds at most {MAX_CELLS}")
    check_target(args.out, "--out", ".png")
    pipe = load_pipeline(args.model, args.root)
    rows = []
    for name in classes:
        frame = pipe(**{"class": name}, seed=args.seed, batch=args.seeds, **sampling_values(args))
        rows.append(list(frame.image))
    with written(args.out) as tmp:
        grid_image(rows, classes, scale=args.scale).save(tmp, format="PNG")
    return {"model": args.model, "classes": classes, "seeds": args.seeds, "out": str(args.out)}
