"""`mindmap generate`: one image (and optionally its frames and GIF) from the command line."""
from __future__ import annotations

import time
from pathlib import Path

from .cli_controls import sampling_values
from .registry import load_pipeline
from .viz import panel, save_gif


def generate(args) -> dict:
    if args.scale < 1 or args.scale > 32:
        raise ValueError(f"--scale must be an integer in [1, 32], got {args.scale}")
    if args.out.suffix.lower() != ".png":
        raise ValueError(f"--out must be a .png file, got {args.out}")
    pipe = load_pipeline(args.model, args.root, dtype=args.dtype)
    values = {"seed": args.seed, **sampling_values(args)}
    if args.class_name is not None:
        values["class"] = args.class_name
    if args.prompt is not None:
        values["prompt"] = args.prompt
    controls = pipe.controls(**values)  # validate before any work or file is touched
    want_frames = args.frames is not None or args.gif is not None
    t0 = time.perf_counter()
    frames = list(pipe.stream(preview_every=None if want_frames else 0, **values))
    seconds = time.perf_counter() - t0
    final = frames[-1]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    final.pil(0, args.scale).save(args.out)
    if args.frames is not None:
        Path(args.frames).mkdir(parents=True, exist_ok=True)
        for i, f in enumerate(frames):
            panel(f, view=pipe.paradigm.view).save(Path(args.frames) / f"frame_{i:03d}.png")
    if args.gif is not None:
        save_gif(frames, args.gif, view=pipe.paradigm.view)
    return {"model": args.model, "class": controls.class_name, "prompt": controls.prompt, "seed": controls.seed,
            "seconds": round(seconds, 4),
            "network_calls": final.network_calls, "frames": len(frames), "out": str(args.out)}
