"""`mindmap bench`: speed of the real sampler and of the naive one, measured in the same run."""
from __future__ import annotations

import statistics
import time

import torch

from .registry import load_pipeline


def _sync(pipe):
    if pipe.device.type == "cuda":
        torch.cuda.synchronize()


def _time_run(pipe, cached: bool, batch: int, seed: int) -> tuple[float, float, int]:
    """(seconds for a whole run without previews, ms to the first preview of a streamed run, calls)."""
    t0 = time.perf_counter()
    frame = pipe(cached=cached, batch=batch, seed=seed)
    _sync(pipe)
    seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    stream = pipe.stream(cached=cached, batch=batch, seed=seed)  # previews as the app shows them
    next(stream)
    _sync(pipe)
    first_ms = (time.perf_counter() - t0) * 1000
    stream.close()
    return seconds, first_ms, frame.network_calls


def _measure(pipe, cached: bool, batch: int, repeats: int) -> dict:
    _time_run(pipe, cached, batch, seed=0)  # warm-up
    runs = [_time_run(pipe, cached, batch, seed=1 + r) for r in range(repeats)]
    seconds = statistics.median(r[0] for r in runs)
    tokens = batch * pipe.tokenizer.grid ** 2
    return {"seconds": round(seconds, 4), "tokens_per_s": round(tokens / seconds, 2),
            "images_per_s": round(batch / seconds, 3), "first_frame_ms": round(statistics.median(r[1] for r in runs), 2),
            "network_calls": runs[0][2]}


def bench(model: str, batch: int = 1, repeats: int = 3, root=None) -> dict:
    """Median of `repeats` runs (after one warm-up) at the model's default controls."""
    if not 1 <= repeats <= 100:
        raise ValueError(f"--repeats must be an integer in [1, 100], got {repeats}")
    pipe = load_pipeline(model, root)
    pipe.controls(batch=batch)  # validates the batch size
    real = _measure(pipe, True, batch, repeats)
    naive = _measure(pipe, False, batch, repeats)
    return {"model": model, "device": str(pipe.device), "threads": torch.get_num_threads(), "batch": batch,
            "tokens_per_image": pipe.tokenizer.grid ** 2, **real, "baseline": naive,
            "speedup": round(naive["seconds"] / real["seconds"], 2)}
