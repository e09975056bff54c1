"""`mindmap generate`: one image (and optionally its frames and GIF) from the command line."""
from __future__ import annotations

import os
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

from .cli_controls import sampling_values
from .registry import load_pipeline
from .viz import panel, save_gif


def check_target(path: Path, flag: str, suffix: str | None = None, folder: bool = False) -> Path:
    """Refuse, before any work, an output the command could not write: the wrong extension, a folder where a file
    goes (or a file where a folder goes), a parent that is a file, or a place that is not writable."""
    path = Path(path)
    if suffix and path.suffix.lower() != suffix:
        raise ValueError(f"{flag} must be a {suffix} file, got {path}")
    if folder and path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {path} exists and is not a folder")
    if not folder and path.is_dir():
        raise ValueError(f"{flag} {path} is a folder; give a file name")
    base = path if folder and path.is_dir() else path.parent
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise ValueError(f"{flag} {path}: {base} is not a folder")
    try:                                                       # a real write: permissions, read-only mounts, /proc
        with tempfile.TemporaryFile(dir=base):
            pass
    except OSError as e:
        raise ValueError(f"{flag} {path}: cannot write in {base} ({e.strerror})") from None
    return path


@contextmanager
def written(path: Path):
    """Write `path` through a temporary name beside it, moved into place only when the block succeeds: a failure
    leaves no partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def generate(args) -> dict:
    if args.scale < 1 or args.scale > 32:
        raise ValueError(f"--scale must be an integer in [1, 32], got {args.scale}")
    check_target(args.out, "--out", ".png")                  # every output checked before any model is loaded
    if args.frames is not None:
        check_target(args.frames, "--frames", folder=True)
    if args.gif is not None:
        check_target(args.gif, "--gif", ".gif")
    pipe = load_pipeline(args.model, args.root, dtype=args.dtype)
    values = {"seed": args.seed, **sampling_values(args)}
    if args.class_name is not None:
        values["class"] = args.class_name
    if args.prompt is not None:
        values["prompt"] = args.prompt
    if args.style is not None:
        values["style"] = args.style
    controls = pipe.controls(**values)  # validate before any work or file is touched
    want_frames = args.frames is not None or args.gif is not None
    t0 = time.perf_counter()
    frames = list(pipe.stream(preview_every=None if want_frames else 0, **values))
    seconds = time.perf_counter() - t0
    final = frames[-1]
    with ExitStack() as stack:       # every file through a temporary name; all moved into place at the end
        final.pil(0, args.scale).save(stack.enter_context(written(Path(args.out))), format="PNG")
        if args.frames is not None:
            for i, f in enumerate(frames):
                panel(f, view=pipe.paradigm.view).save(
                    stack.enter_context(written(Path(args.frames) / f"frame_{i:03d}.png")), format="PNG")
        if args.gif is not None:
            save_gif(frames, stack.enter_context(written(Path(args.gif))), view=pipe.paradigm.view)
    return {"model": args.model, "class": controls.class_name, "prompt": controls.prompt,
            **({"style": controls.values["style"]} if "style" in controls.values else {}), "seed": controls.seed,
            "seconds": round(seconds, 4),
            "network_calls": final.network_calls, "frames": len(frames), "out": str(args.out)}
