"""`mindmap race`: one class and seed decoded by every class generator side by side, on one clock.

The generators take turns in one process, and the one that has spent the least time in its own sampler always
goes next. So at every moment of the race each model has had the same share of the machine, as if each ran
alone from the same start, and what a person sees (live in the app's Race tab, or as a GIF) is a fair race:
each panel shows its model's latest frame, its network calls and its milliseconds. A model's clock is the time
spent in its sampler; decoding a preview for the board (done lazily, for the frames shown) is not counted.
"""
from __future__ import annotations

import heapq
import time
from pathlib import Path
from typing import Iterator, NamedTuple

from PIL import Image, ImageDraw

from .frames import Frame
from .viz import font

PANEL = 128          # px per model on the board
CAPTION = 40         # px of text under each panel


class Lap(NamedTuple):
    model: str
    frame: Frame
    seconds: float   # the model's own sampler time so far


def conditions(pipes: dict, class_name: str, style: str | None = None) -> dict[str, dict]:
    """Each pipe's condition: the class, and the style for every model with a style condition (the others draw
    the class in the styles they were trained on); a style no entrant takes is refused."""
    if style is not None and not any(style in pipe.styles for pipe in pipes.values()):
        takers = sorted({s for pipe in pipes.values() for s in pipe.styles})
        raise ValueError(f"style must be one of {', '.join(takers) or 'none: no entrant has a style condition'}; "
                         f"got {style!r}")
    return {name: {"class": class_name, **({"style": style} if style in pipe.styles else {})}
            for name, pipe in pipes.items()}


def race(pipes: dict, class_name: str, seed: int, style: str | None = None) -> Iterator[Lap]:
    """Every pipe in `pipes` (name -> class Pipeline) decodes `class_name` at `seed` (in `style`, where a model takes
    it); yields each new frame, the model with the least sampler time so far always going next (ties: in the
    order given)."""
    for name, pipe in pipes.items():
        if pipe.conditioning != "class":
            raise ValueError(f"a race is between class generators; {name} is conditioned on {pipe.conditioning}")
    conds = conditions(pipes, class_name, style)
    for name, pipe in pipes.items():
        pipe.controls(**conds[name], seed=seed)                 # an unknown class or bad seed: refused up front
    streams = {name: pipe.stream(**conds[name], seed=seed, preview_every=1) for name, pipe in pipes.items()}
    queue = [(0.0, k, name) for k, name in enumerate(streams)]
    try:
        while queue:
            seconds, k, name = heapq.heappop(queue)
            t = time.perf_counter()
            frame = next(streams[name], None)
            seconds += time.perf_counter() - t
            if frame is None:
                continue
            yield Lap(name, frame, seconds)
            if not frame.done:
                heapq.heappush(queue, (seconds, k, name))
    finally:
        for stream in streams.values():
            stream.close()


def entrants(class_name: str, root: Path | None = None) -> list[str]:
    """The class generators under `root` that know `class_name` (the emoji models share their 99 classes)."""
    from .registry import list_models
    names = [m.name for m in list_models(root) if m.manifest.get("conditioning", "class") == "class"
             and class_name in (m.manifest.get("classes") or [])]
    if not names:
        raise ValueError(f"no class generator knows the class {class_name!r}")
    return names


class Board:
    """The latest lap of each model, drawn side by side: its picture, name, network calls and milliseconds."""

    def __init__(self, models: list[str]):
        self.models, self.laps = list(models), {}

    def update(self, lap: Lap):
        self.laps[lap.model] = lap

    def caption(self, name: str) -> str:
        lap = self.laps.get(name)
        if lap is None:
            return "waiting"
        end = " done" if lap.frame.done else ""
        return f"{lap.frame.network_calls} calls · {1000 * lap.seconds:.0f} ms{end}"

    def image(self) -> Image.Image:
        board = Image.new("RGB", (len(self.models) * (PANEL + 8) + 8, PANEL + CAPTION + 8), "white")
        draw = ImageDraw.Draw(board)
        for k, name in enumerate(self.models):
            x, lap = 8 + k * (PANEL + 8), self.laps.get(name)
            tile = lap.frame.pil(0).resize((PANEL, PANEL), Image.Resampling.NEAREST) if lap else \
                Image.new("RGB", (PANEL, PANEL), (200, 200, 200))
            board.paste(tile, (x, 4))
            draw.text((x, PANEL + 8), name.removesuffix("-emoji32"), fill=(20, 20, 20), font=font(12))
            draw.text((x, PANEL + 24), self.caption(name), fill=(70, 70, 70), font=font(11))
        return board

    def results(self) -> list[dict]:
        """Per model: its paradigm's frame counts at the end (network calls, sampler ms)."""
        return [{"model": name, "network_calls": lap.frame.network_calls, "ms": round(1000 * lap.seconds, 1),
                 "done": lap.frame.done} for name in self.models if (lap := self.laps.get(name))]


def race_gif(pipes: dict, class_name: str, seed: int, out: Path, tick: float = 0.05, hold: float = 1.5,
             style: str | None = None) -> list[dict]:
    """Race `pipes` and write the board as a GIF on the models' shared clock: one frame per `tick` seconds of
    sampler time, the finished board held `hold` seconds. Returns the board's results."""
    laps = sorted(race(pipes, class_name, seed, style), key=lambda lap: lap.seconds)   # each model's laps in order
    board, frames, k, step = Board(list(pipes)), [], 0, 0
    while not frames or k < len(laps):              # the last frame: the finished board
        while k < len(laps) and laps[k].seconds <= step * tick:
            board.update(laps[k])
            k += 1
        frames.append(board.image())
        step += 1
    durations = [int(tick * 1000)] * (len(frames) - 1) + [int(hold * 1000)]
    frames[0].save(out, save_all=True, append_images=frames[1:], duration=durations, loop=0)
    return board.results()
