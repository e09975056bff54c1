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


def race(pipes: dict, class_name: str, seed: int) -> Iterator[Lap]:
    """Every pipe in `pipes` (name -> class Pipeline) decodes `class_name` at `seed`; yields each new frame, the
    model with the least sampler time so far always going next (ties: in the order given)."""
    for name, pipe in pipes.items():
        if pipe.conditioning != "class":
            raise ValueError(f"a race is between class generators; {name} is conditioned on {pipe.conditioning}")
        pipe.controls(**{"class": class_name, "seed": seed})    # an unknown class or bad seed: refused up front
    streams = {name: pipe.stream(**{"class": class_name}, seed=seed, preview_every=1) for name, pipe in pipes.items()}
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


def race_gif(pipes: dict, class_name: str, seed: int, out: Path, tick: float = 0.05, hold: float = 1.5) -> list[dict]:
    """Race `pipes` and write the board as a GIF on the models' shared clock: one frame per `tick` seconds of
    sampler time, the finished board held `hold` seconds. Returns the board's results."""
    laps = sorted(race(pipes, class_name, seed), key=lambda lap: lap.seconds)   # each model's laps stay in order
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
