"""`mindmap bench`: speed of the real sampler and of a naive one, measured in the same run.

The naive baseline is each paradigm's own (`Paradigm.baseline`): the raster sampler without its KV cache
(the whole prefix recomputed every step); masked decoding committing one cell per call. `--sweep`
adds rows at other values of one control (e.g. masked steps 4, 8, 16) and `--against` measures
other models at their defaults in the same run, so every ratio comes from one sitting.
"""
from __future__ import annotations

import statistics
import time

import torch

from .controls import api_name
from .registry import load_pipeline


SETTLE_SECONDS = 0.5      # bench --app: the pause before each sampler-alone timing


def _sync(pipe):
    if pipe.device.type == "cuda":
        torch.cuda.synchronize()


def _time_run(pipe, batch: int, seed: int, values: dict, stream: bool = True):
    """(seconds for a whole run without previews, ms to the first preview of a streamed run (`stream`, else None),
    final Frame)."""
    t0 = time.perf_counter()
    frame = pipe(batch=batch, seed=seed, **values)
    frame.image                                             # the picture, decoded (lazily, by some samplers)
    _sync(pipe)
    seconds = time.perf_counter() - t0
    if not stream:
        return seconds, None, frame
    t0 = time.perf_counter()
    frames = pipe.stream(batch=batch, seed=seed, **values)  # previews as the app shows them
    next(frames).image
    _sync(pipe)
    first_ms = (time.perf_counter() - t0) * 1000
    frames.close()
    return seconds, first_ms, frame


def measure(pipe, batch: int, repeats: int, values: dict) -> dict:
    """Median of `repeats` runs after one warm-up; `values` are controls (plus `cached=False` for no KV cache)."""
    _time_run(pipe, batch, 0, values)  # warm-up
    runs = [_time_run(pipe, batch, 1 + r, values) for r in range(repeats)]
    seconds = statistics.median(r[0] for r in runs)
    tokens = batch * pipe.cells
    spread = [round(min(r[0] for r in runs) / batch, 4), round(max(r[0] for r in runs) / batch, 4)]
    out = {"controls": dict(values), "seconds": round(seconds, 4), "seconds_per_image": round(seconds / batch, 4),
           "seconds_per_image_range": spread,
           "tokens_per_s": round(tokens / seconds, 2), "images_per_s": round(batch / seconds, 3),
           "first_frame_ms": round(statistics.median(r[1] for r in runs), 2)}
    calls = [r[2].network_calls for r in runs]      # a sampler like SJD takes a different number per seed
    out["network_calls"] = calls[0] if len(set(calls)) == 1 else round(statistics.mean(calls), 1)
    if len(set(calls)) > 1:
        out["network_calls_range"] = [min(calls), max(calls)]
    out["codes_per_call"] = round(pipe.cells / statistics.mean(calls), 2)   # cells decided per network call
    if "timing" in runs[0][2].views:   # MAR: where the time goes, transformer against diffusion head
        out["split_s"] = {k: round(statistics.median(r[2].views["timing"][k] for r in runs), 4)
                          for k in runs[0][2].views["timing"]}
    return out


def bench_one(pipe, batch: int, repeats: int, controls: dict) -> dict:
    """The real sampler at `controls` and the paradigm's naive baseline, measured back to back."""
    real = measure(pipe, batch, repeats, controls)
    naive = measure(pipe, batch, repeats, {**controls, **pipe.paradigm.baseline(pipe)})
    return {"model": pipe.name, "paradigm": pipe.paradigm.name, **real, "baseline": naive,
            "speedup": round(naive["seconds"] / real["seconds"], 2)}


def bench(model: str, batch: int = 1, repeats: int = 3, root=None, controls: dict | None = None,
          sweep: list[dict] | None = None, against: list[str] | None = None, dtype: str | None = None,
          compile: bool = False) -> dict:
    """The model at its defaults (plus `controls`) with its naive baseline, a sweep, and other models; `dtype`: the
    generators' (see `Pipeline.from_pretrained`); `compile`: also the same model with its decode step compiled,
    with the seconds its first image takes (the compilation)."""
    if not 1 <= repeats <= 100:
        raise ValueError(f"--repeats must be an integer in [1, 100], got {repeats}")
    controls = dict(controls or {})
    pipe = load_pipeline(model, root, dtype=dtype)
    pipe.controls(batch=batch, **controls)  # validates before any timing
    compiled = load_pipeline(model, root, dtype=dtype, compile=True) if compile else None
    for values in sweep or []:
        pipe.controls(**{**controls, **values})
    others = [load_pipeline(name, root, dtype=dtype) for name in against or []]
    for other in others:
        if other.cells != pipe.cells:
            raise ValueError(f"--against {other.name} has {other.cells} tokens per image, {model} has {pipe.cells}")
    out = {"device": str(pipe.device), "dtype": str(next(pipe.generator.parameters()).dtype).removeprefix("torch."),
           "threads": torch.get_num_threads(), "batch": batch,
           "tokens_per_image": pipe.cells, **bench_one(pipe, batch, repeats, controls)}
    if sweep:
        out["sweep"] = [measure(pipe, batch, repeats, {**controls, **values}) for values in sweep]
    if compiled:
        t0 = time.perf_counter()
        compiled(batch=batch, seed=0, **controls).image
        _sync(compiled)
        first = time.perf_counter() - t0
        out["compiled"] = {**measure(compiled, batch, repeats, controls), "first_image_s": round(first, 2)}
    if others:
        out["against"] = {o.name: bench_one(o, batch, repeats, {}) for o in others}
        for row in out["against"].values():
            row["ratio"] = round(row["seconds"] / out["seconds"], 2)   # > 1: the benched model is faster
    return out


def _row(name: str, r: dict, note: str = "") -> str:
    controls = ", ".join(f"{k}={v}" for k, v in r["controls"].items()) or "defaults"
    split = r.get("split_s")
    split = f"{split['transformer_s']:.3f} / {split['head_s']:.3f}" if split else "—"
    low, high = r.get("seconds_per_image_range", [r["seconds_per_image"]] * 2)
    calls = r["network_calls"]
    if "network_calls_range" in r:
        calls = f"{calls} mean ({r['network_calls_range'][0]}–{r['network_calls_range'][1]})"
    return (f"| {name} | {controls}{note} | {calls} | {r['codes_per_call']:.2f} | {r['seconds_per_image']:.4f} "
            f"({low:.4f}–{high:.4f}) | "
            f"{r['images_per_s']:.2f} | {r['tokens_per_s']:.0f} | {r['first_frame_ms']:.1f} | {split} |")


def markdown_table(out: dict) -> str:
    """One bench run as a table: each model at its defaults, its naive baseline, the sweep."""
    head = ("| model | controls | network calls | codes per call | s/image (min–max) | images/s | tokens/s | "
            "first preview (ms) | transformer / head s (MAR) |\n|---|---|---|---|---|---|---|---|---|")
    rows = []
    for r in [out, *out.get("against", {}).values()]:
        rows.append(_row(r["model"], r))
        rows.append(_row(r["model"], r["baseline"], f" — naive baseline, {r['speedup']:.1f}x slower"))
    if "compiled" in out:
        c = out["compiled"]
        note = f" — decode step compiled (torch.compile), its first image {c['first_image_s']:g} s"
        rows.append(_row(out["model"], c, note))
    rows += [_row(out["model"], r) for r in out.get("sweep", [])]
    return "\n".join([head, *rows])


def _spread(values: list[float], digits: int) -> dict:
    return {"median": round(statistics.median(values), digits), "min": round(min(values), digits),
            "max": round(max(values), digits)}


def bench_train(paradigm: str, tokenizer, preset: str = "arena", batch: int = 256, steps: int = 5,
                mixed_precision: str = "no", compile: bool = False) -> dict:
    """Seconds per training step of a fresh `paradigm` generator as `train generator` trains it (median, min and max
    over `steps` steps after two warm-up steps); `compile`: the same through torch.compile in the same run, its
    compilation paid in its warm-up."""
    from .train.common import hardware
    from .train.generator import train_step_seconds
    if not 1 <= steps <= 1000:
        raise ValueError(f"--train-steps must be an integer in [1, 1000], got {steps}")
    run = dict(paradigm=paradigm, tokenizer=tokenizer, preset=preset, batch=batch, mixed_precision=mixed_precision,
               steps=steps)
    out = {**run, "tokenizer": str(tokenizer), "hardware": hardware(), "torch": torch.__version__,
           "eager": _spread(train_step_seconds(**run), 3)}
    if compile:
        t0 = time.perf_counter()
        times = train_step_seconds(**run, compile=True)
        out["compiled"] = {**_spread(times, 3), "with_warmup_s": round(time.perf_counter() - t0, 1)}
        out["speedup"] = round(out["eager"]["median"] / out["compiled"]["median"], 2)
    return out


def train_markdown(out: dict) -> str:
    """A `bench --train` run as a table: seconds per step, eager and compiled."""
    rows = ["| paradigm | preset | batch | autocast | forward | s/step, median (min–max) |", "|---|---|---|---|---|---|"]
    for kind in ("eager", "compiled"):
        if kind in out:
            s = out[kind]
            note = f", {out['speedup']:g}x" if kind == "compiled" else ""
            rows.append(f"| {out['paradigm']} | {out['preset']} | {out['batch']} | {out['mixed_precision']} | "
                        f"{kind}{note} | {s['median']:.2f} ({s['min']:.2f}–{s['max']:.2f}) |")
    return "\n".join(rows)


def bench_app(model: str, repeats: int = 5, root=None, controls: dict | None = None) -> dict:
    """What a person waits for: `app.py` started on a free port and driven through gradio_client, one image per
    seed 1..repeats after a warm-up (seed 0). Each request's first update and whole stream are timed from the
    submit, twice: as the page receives the updates (the browser then fetches each picture, in parallel), and by a
    client that downloads every update's pictures one after another before reading on (an upper bound). Right
    before each request the sampler alone (picture decoded, no app, this process) makes the same image, so each
    request has its own app / sampler ratio: this machine's speed drifts more between minutes than between the two."""
    if not 1 <= repeats <= 100:
        raise ValueError(f"--repeats must be an integer in [1, 100], got {repeats}")
    from gradio_client import Client

    from .serve import client_downloads, serve_app
    controls = dict(controls or {})
    pipe = load_pipeline(model, root)
    pipe.controls(**controls)                      # a bad control is refused before the app starts
    params = {api_name(k): v for k, v in controls.items()}
    runs = {}
    with serve_app(root) as url, client_downloads() as downloads:
        for fetch in (False, True):
            client = Client(url, verbose=False, download_files=downloads if fetch else False)
            firsts, totals, updates, alone = [], [], [], []
            for seed in range(repeats + 1):
                time.sleep(SETTLE_SECONDS)         # the app's work after the last request done, not timed here
                sampler = _time_run(pipe, 1, seed, controls, stream=False)[0]
                t0, first, count = time.perf_counter(), None, 0
                for _ in client.submit(model=model, seed=seed, **params, api_name="/generate"):
                    count += 1
                    first = first if first is not None else time.perf_counter() - t0
                if seed:                           # seed 0 warms the app and the client up
                    firsts.append(first * 1000)
                    totals.append(time.perf_counter() - t0)
                    updates.append(count)
                    alone.append(sampler)
            runs[fetch] = {"first_update_ms": _spread(firsts, 1), "seconds": _spread(totals, 4), "updates": updates,
                           "sampler_seconds": _spread(alone, 4),
                           "app_over_sampler": _spread([t / s for t, s in zip(totals, alone)], 2)}
            client.close()                         # the client may still be fetching pictures in its threads:
            for pool in (client.executor, client.helper_executor):     # let them finish before their folder goes
                pool.shutdown(wait=True)
    app = {**runs[False], "pictures_fetched": runs[True]}
    return {"model": model, "controls": controls, "repeats": repeats, "app": app,
            "sampler_seconds": app["sampler_seconds"]["median"],
            "app_over_sampler": app["app_over_sampler"]["median"]}


def app_markdown(out: dict) -> str:
    """`bench --app` as a table: the stream as the page receives it, then with every picture downloaded."""
    a, controls = out["app"], ", ".join(f"{k}={v}" for k, v in out["controls"].items()) or "defaults"

    def spread(d: dict, digits: int) -> str:
        return f"{d['median']:.{digits}f} ({d['min']:.{digits}f}–{d['max']:.{digits}f})"
    rows = [(f"{controls}", a), (f"{controls}, every picture downloaded in turn", a["pictures_fetched"])]
    return ("| model | controls | first update, ms (min–max) | whole image in the app, s (min–max) | sampler alone, s "
            "(min–max) | app / sampler, per request (min–max) | updates sent |\n|---|---|---|---|---|---|---|\n" +
            "\n".join(f"| {out['model']} | {label} | {spread(r['first_update_ms'], 0)} | {spread(r['seconds'], 2)} | "
                      f"{spread(r['sampler_seconds'], 2)} | {spread(r['app_over_sampler'], 2)} | "
                      f"{min(r['updates'])}–{max(r['updates'])} |" for label, r in rows))

