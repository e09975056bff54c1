"""`python -m mindmap soak`: the app under a long mixed load, as an outside client sees it.

Starts `app.py` on a free loopback port with a temp folder of its own, sends `requests` requests from
`concurrency` clients (gradio_client, one per thread) and reports what came back and what the server kept:

- the requests: every installed model in turn at random valid controls (each control left out, i.e. the model's
  default, or drawn in its range), and one in `invalid_share` a bad one (a number out of range or not a number,
  NaN, a control the model does not take, an unknown model or class, an empty or over-long prompt, `/classes` of
  an unknown model); `/models` and `/classes` between them;
- served (a final picture, or one stopped at the app's time limit), refused (a readable error: a bad control, or
  the work budget), failed (anything else: a bad request served, a good one refused but not by the budget, a
  fault of the app, no answer within the timeout);
- latency p50/p95 of served and of refused requests;
- the app's resident memory and its temp folder (files, bytes) after start-up, after one request per model (every
  pipeline loaded), every tenth of the run, and once idle past the pictures' lifetime (`cache_seconds`).
"""
from __future__ import annotations

import os
import random
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .controls import api_name

BUDGET_REFUSAL = "this request would take about"
ANSWER_TIMEOUT = 600.0


@dataclass(frozen=True)
class Call:
    endpoint: str          # /generate, /classes or /models
    params: dict
    valid: bool
    what: str              # for the report: the model, or the kind of bad request


def rss_mb(pid: int) -> float:
    """Resident memory of process `pid`, MB (Linux /proc; psutil elsewhere)."""
    status = Path(f"/proc/{pid}/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    import psutil
    return psutil.Process(pid).memory_info().rss / 2**20


def disk_use(folder: Path) -> dict:
    """Files and MB under `folder` (os.walk: the app's cleaner may remove a file or folder while it is read)."""
    files, size = 0, 0
    for parent, _, names in os.walk(folder):
        for name in names:
            try:
                size += os.stat(os.path.join(parent, name)).st_size
                files += 1
            except FileNotFoundError:
                pass
    return {"files": files, "mb": round(size / 2**20, 2)}


def valid_controls(rng: random.Random, model: dict) -> dict:
    """API parameters of a good request: each control the model takes left out (its default) or drawn in range."""
    params = {}
    for name, spec in model["controls"].items():
        if name == "batch" or (name not in ("class", "prompt") and rng.random() < 0.5):
            continue
        kind = spec["type"]
        if kind == "choice":
            value = rng.choice(spec["choices"])
        elif kind == "text":
            value = rng.choice(model["examples"] or ["a red apple"])
        elif kind == "int":
            value = rng.randint(spec["min"], spec["max"])
        else:
            value = round(rng.uniform(spec["min"], spec["max"]), 3)
        params[api_name(name)] = value
    return params


def invalid_call(rng: random.Random, models: list[dict]) -> Call:
    """A bad request of a random kind, on a random model."""
    model = rng.choice(models)
    params = {"model": model["name"], **valid_controls(rng, model)}
    numeric = [n for n, s in model["controls"].items() if s["type"] in ("int", "float") and n != "batch"]
    others = sorted({n for m in models for n in m["controls"]} - set(model["controls"]) - {"batch"})
    kinds = ["unknown model", "out of range", "not a number", "NaN", "classes of an unknown model"]
    kinds += ["unknown control"] if others else []
    kinds += (["empty prompt", "prompt too long"] if "prompt" in model["controls"] else
              ["unknown class"] if "class" in model["controls"] else [])
    kind = rng.choice(kinds)
    name = rng.choice(numeric)
    spec = model["controls"][name]
    if kind == "unknown model":
        params["model"] = "no-such-model"
    elif kind == "out of range":
        params[api_name(name)] = spec["max"] + (1 if spec["type"] == "int" else abs(spec["max"]) + 1)
    elif kind == "not a number":
        params[api_name(name)] = "abc"
    elif kind == "NaN":
        params[api_name(name)] = "nan"
    elif kind == "unknown control":
        params[api_name(rng.choice(others))] = 1
    elif kind == "empty prompt":
        params["prompt"] = "\u200b \u200b"
    elif kind == "prompt too long":
        params["prompt"] = "red apple " * 100
    elif kind == "unknown class":
        params["class_name"] = "no-such-class"
    else:
        return Call("/classes", {"model": "no-such-model"}, False, kind)
    return Call("/generate", params, False, kind)


def plan(models: list[dict], requests: int, seed: int, invalid_share: float = 0.2) -> list[Call]:
    """`requests` calls: good ones cycle through the models; bad ones and the small endpoints mixed in."""
    rng = random.Random(seed)
    calls = []
    for i in range(requests):
        roll = rng.random()
        if roll < invalid_share:
            calls.append(invalid_call(rng, models))
        elif roll < invalid_share + 0.05:
            model = rng.choice(models)["name"]
            calls.append(rng.choice([Call("/models", {}, True, "models"),
                                     Call("/classes", {"model": model}, True, "classes")]))
        else:
            model = models[i % len(models)]
            calls.append(Call("/generate", {"model": model["name"], **valid_controls(rng, model)}, True, model["name"]))
    return calls


def outcome(call: Call, answer, error: Exception | None) -> str:
    """served, stopped, refused (bad request or budget) or failed."""
    from gradio_client.exceptions import AppError
    if error is None:
        if not call.valid:
            return "failed"            # a bad request got an answer
        if call.endpoint != "/generate":
            return "served"
        stats = answer[-1] or ""
        return "stopped" if "**stopped**" in stats else "served" if "step " in stats else "failed"
    message = str(error) if isinstance(error, AppError) else ""
    if not message or message.startswith("generation failed"):
        return "failed"
    if message.startswith(BUDGET_REFUSAL):
        return "refused (budget)"
    return "refused" if not call.valid else "failed"


def _spread(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"n": len(values), "p50": round(statistics.median(values), 3), "p95": round(p95, 3),
            "max": round(ordered[-1], 3)}


def soak(requests: int = 200, concurrency: int = 4, root: Path | None = None, seed: int = 0,
         cache_seconds: int = 60, request_seconds: float | None = None, log=print) -> dict:
    """Run the soak; the report (see the module's docstring). `log`: one line per tenth of the run."""
    from gradio_client import Client

    from .serve import app_process, cleaner_period
    if not 1 <= requests <= 1_000_000:
        raise ValueError(f"--requests must be in [1, 1000000], got {requests}")
    if not 1 <= concurrency <= 16:
        raise ValueError(f"--concurrency must be in [1, 16] (the app queues at most 20), got {concurrency}")
    with tempfile.TemporaryDirectory() as tmp:
        temp = Path(tmp) / "gradio"
        # the app as deployed: its own preview rate, whatever this process's environment says
        env = {"GRADIO_TEMP_DIR": str(temp), "MINDMAP_CACHE_SECONDS": str(cache_seconds),
               "MINDMAP_PREVIEW_INTERVAL": None}
        if request_seconds is not None:
            env["MINDMAP_REQUEST_SECONDS"] = str(request_seconds)
        with app_process(root, env=env) as (url, proc):
            local = threading.local()

            def client() -> Client:
                if not hasattr(local, "client"):
                    local.client = Client(url, verbose=False, download_files=False)
                return local.client

            def send(call: Call) -> tuple[str, float, str]:
                t0, answer, error = time.perf_counter(), None, None
                try:
                    answer = client().submit(**call.params, api_name=call.endpoint).result(timeout=ANSWER_TIMEOUT)
                except Exception as e:       # classified below: a readable refusal or a failure
                    error = e
                kind = outcome(call, answer, error)
                detail = "" if kind in ("served", "refused", "stopped") else f"{type(error).__name__}: {error}"[:300]
                return kind, time.perf_counter() - t0, detail

            def sample(label: str) -> dict:
                return {"at": label, "rss_mb": round(rss_mb(proc.pid), 1), **disk_use(temp)}

            memory = [sample("started")]
            models = client().predict(api_name="/models")
            if not models:
                raise ValueError(f"no models to soak under {root or 'the default checkpoints'}")
            for m in models:                    # every pipeline loaded once: memory from here on should stay flat
                send(Call("/generate", {"model": m["name"]}, True, m["name"]))
            memory.append(sample("every model loaded"))
            calls = plan(models, requests, seed)
            results, failures, t0 = [], [], time.perf_counter()
            tenth = max(1, requests // 10)
            with ThreadPoolExecutor(concurrency) as pool:
                for i, (call, (kind, seconds, detail)) in enumerate(zip(calls, pool.map(send, calls)), 1):
                    results.append((call, kind, seconds))
                    if kind == "failed":
                        failures.append({"call": call.endpoint, "what": call.what, "params": call.params,
                                         "error": detail})
                    if i % tenth == 0 or i == requests:
                        memory.append(sample(f"{i} requests"))
                        log(f"{i}/{requests} requests, {len(failures)} failed, {memory[-1]['rss_mb']} MB RSS, "
                            f"{memory[-1]['files']} temp files ({memory[-1]['mb']} MB), "
                            f"{time.perf_counter() - t0:.0f} s")
            wall = time.perf_counter() - t0
            # idle past the pictures' lifetime (and the cleaner's period): every picture sent should be gone
            idle = cache_seconds + cleaner_period(cache_seconds) + 2
            time.sleep(idle)
            memory.append(sample(f"idle {idle:g} s after"))
    counts = {k: sum(1 for _, kind, _ in results if kind == k)
              for k in ("served", "stopped", "refused", "refused (budget)", "failed")}
    loaded = memory[1]
    return {"requests": requests, "concurrency": concurrency, "seed": seed, "cache_seconds": cache_seconds,
            "models": [m["name"] for m in models], "wall_s": round(wall, 1), **counts,
            "latency_s": {"served": _spread([s for _, k, s in results if k in ("served", "stopped")]),
                          "refused": _spread([s for _, k, s in results if k.startswith("refused")])},
            "memory": memory, "rss_growth_after_loading_mb": round(memory[-1]["rss_mb"] - loaded["rss_mb"], 1),
            "slowest": [{"what": c.what, "params": c.params, "outcome": k, "seconds": round(s, 2)}
                        for c, k, s in sorted(results, key=lambda r: -r[2])[:5]],
            "failures": failures[:20], "cpu_threads": os.cpu_count()}


def markdown(out: dict) -> str:
    """The soak report as two tables: outcomes and latency, then memory and temp disk over the run."""
    lat = out["latency_s"]

    def spread(d: dict) -> str:
        return f"{d['p50']:.2f} / {d['p95']:.2f}" if d["n"] else "—"
    head = (f"{out['requests']} requests from {out['concurrency']} clients over {len(out['models'])} models in "
            f"{out['wall_s']:.0f} s (pictures kept {out['cache_seconds']} s):\n\n"
            "| served | stopped at the limit | refused (bad request) | refused (work budget) | failed "
            "| served latency p50 / p95, s | refused latency p50 / p95, s |\n|---|---|---|---|---|---|---|\n"
            f"| {out['served']} | {out['stopped']} | {out['refused']} | {out['refused (budget)']} | {out['failed']} "
            f"| {spread(lat['served'])} | {spread(lat['refused'])} |\n\n")
    rows = "\n".join(f"| {m['at']} | {m['rss_mb']:.0f} | {m['files']} | {m['mb']:.1f} |" for m in out["memory"])
    return head + "| when | app RSS, MB | temp files | temp MB |\n|---|---|---|---|\n" + rows
