"""The training harness every model shares: accelerate, seeded batches sharded over processes, mixed
precision, resume, a loss log, model cards.

One process or many (`accelerate launch` / `torchrun`, gloo on CPU): every process draws the same global
batch from (seed, step) and trains on its own shard of it, so a run on N processes sees the same data as
a run on one, and a resumed run the same as an uninterrupted one.
"""
from __future__ import annotations

import contextlib
import copy
import csv
import json
import logging
import os
import platform
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.state import AcceleratorState
from diffusers.optimization import get_cosine_schedule_with_warmup
from tqdm import tqdm

logger = logging.getLogger(__name__)


def hardware() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (CUDA)"
    return f"CPU, {torch.get_num_threads()} threads ({platform.processor() or platform.machine()})"


class StopRequest:
    """Set by SIGINT or SIGTERM while a run trains (`stop_requests`)."""
    signal: int | None = None


@contextlib.contextmanager
def stop_requests(enabled: bool = True):
    """While training, the first SIGINT (Ctrl-C) or SIGTERM asks the run to stop after the step in hand and save,
    so the same command resumes where it stopped instead of at the last periodic save; a second one acts at once
    (the default handlers are back). Only in the main thread of a single process: processes of one run stopping
    at different steps would wait on each other."""
    request = StopRequest()
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield request
        return
    kinds = (signal.SIGINT, signal.SIGTERM)
    before = {k: signal.getsignal(k) for k in kinds}

    def ask(signum, frame):
        request.signal = signum
        for k in kinds:
            signal.signal(k, before[k])

    for k in kinds:
        signal.signal(k, ask)
    try:
        yield request
    finally:
        for k in kinds:
            signal.signal(k, before[k])


def batch_indices(pool: torch.Tensor, batch: int, seed: int, step: int) -> torch.Tensor:
    """The batch for `step`: a pure function of (seed, step), so a resumed run sees the same data."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    return pool[torch.randint(0, len(pool), (batch,), generator=g)]


MIXED_PRECISION = ("no", "bf16", "fp16")


class Trainer:
    """Runs `loss_fn(step) -> (loss, logs)` for `steps` steps with AdamW and a cosine schedule.

    State (model, optimizer, scheduler, step) is saved to `run_dir` every `save_every` steps and at
    the end; constructing a Trainer on the same `run_dir` resumes from it. Every step's logs (averaged
    over processes) go to `run_dir/losses.csv`; `export_losses` copies it beside the checkpoint.
    """

    def __init__(self, model: torch.nn.Module, steps: int, lr: float, run_dir: Path, warmup: int = 100,
                 weight_decay: float = 0.0, save_every: int = 250, cpu: bool = False, mixed_precision: str = "no",
                 companion: torch.nn.Module | None = None, companion_lr: float | None = None, defer: bool = False,
                 compile: bool = False):
        """`defer`: the step count is fixed later by `plan`. `companion`: a second network trained beside the model
        by the loss itself (a tokenizer's discriminator), with its own AdamW (`companion_lr`, default `lr`); saved
        and resumed with the rest. `compile`: the losses call the model's forward through `torch.compile`
        (inductor); what is saved is the plain model's state, so a run resumes with or without it."""
        if mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"--mixed-precision must be one of {', '.join(MIXED_PRECISION)}, got {mixed_precision!r}")
        if int(os.environ.get("WORLD_SIZE", "1")) == 1:
            # accelerate keeps one state per process: a second trainer in this process (another precision) starts
            # afresh instead of being refused.
            AcceleratorState._reset_state(reset_partial_state=True)
        # Without a GPU the processes of `torchrun` / `accelerate launch` can only meet over gloo on the CPU.
        # split_batches: each step's global batch is split over the processes, so the schedule steps once a step.
        self.accelerator = Accelerator(cpu=cpu or not torch.cuda.is_available(), mixed_precision=mixed_precision,
                                       dataloader_config=DataLoaderConfiguration(split_batches=True))
        if self.accelerator.device.type == "cuda":      # TF32 matmuls and convolutions: a float32 run's speed on a GPU
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        launched = int(os.environ.get("WORLD_SIZE", "1"))
        if launched != self.accelerator.num_processes:
            raise RuntimeError(f"launched as {launched} processes but accelerate runs {self.accelerator.num_processes}"
                               "; every process would train on the same batches")
        # Not wrapped in DistributedDataParallel: losses call parts of the model outside its forward (MAR's
        # diffusion head), which DDP would not synchronise; `_average_gradients` does it for every parameter.
        self.model = self.plain = self.accelerator.prepare_model(model, evaluation_mode=True)
        if compile:
            self.model = torch.compile(self.plain)
        self.optimizer = self.accelerator.prepare(
            torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=weight_decay))
        self.companion = self.companion_optimizer = None
        if companion is not None:
            self.companion = self.accelerator.prepare_model(companion, evaluation_mode=True)
            self.companion_optimizer = self.accelerator.prepare(torch.optim.AdamW(
                companion.parameters(), lr=companion_lr or lr, betas=(0.5, 0.9), weight_decay=0.0))
        self.warmup, self.save_every, self.run_dir = warmup, save_every, Path(run_dir)
        self.step, self.seconds = 0, 0.0
        if not defer:
            self.plan(steps)

    def plan(self, steps: int):
        """Fix the number of steps (the cosine schedule's length) and resume from `run_dir` if it holds a state.
        Called by the constructor, or later with `defer` (steps measured first: `calibrated_steps`)."""
        self.steps = steps
        opt = self.optimizer.optimizer if hasattr(self.optimizer, "optimizer") else self.optimizer
        self.scheduler = self.accelerator.prepare(
            get_cosine_schedule_with_warmup(opt, min(self.warmup, steps // 10), steps))
        if (self.run_dir / "trainer.json").exists():
            self.accelerator.load_state(str(self.run_dir / "state"))
            info = json.loads((self.run_dir / "trainer.json").read_text())
            self.step, self.seconds = info["step"], info["seconds"]
            logger.info("resumed %s at step %d", self.run_dir, self.step)
        self._trim_losses()

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def losses_path(self) -> Path:
        return self.run_dir / "losses.csv"

    def shard(self, rows: torch.Tensor) -> torch.Tensor:
        """This process's share of a global batch (rows split into equal contiguous parts, one per process)."""
        n, k = self.accelerator.num_processes, self.accelerator.process_index
        if len(rows) % n:
            raise ValueError(f"--batch {len(rows)} must be a multiple of the {n} training processes")
        return rows.chunk(n)[k]

    def batch(self, pool: torch.Tensor, batch: int, seed: int, step: int) -> torch.Tensor:
        """This process's rows of the global batch `batch_indices(pool, batch, seed, step)`."""
        return self.shard(batch_indices(pool, batch, seed, step))

    def seeded(self, seed: int) -> torch.Generator:
        """A generator for the loss's own draws (dropout of labels, noise...), distinct on every process."""
        return torch.Generator().manual_seed(seed + 1_000_003 * self.accelerator.process_index)

    def companion_step(self, loss: torch.Tensor):
        """One step of the companion network on `loss` (its gradients averaged over processes like the model's)."""
        self.companion_optimizer.zero_grad(set_to_none=True)
        self.accelerator.backward(loss)
        self._average_gradients(self.companion)
        self.companion_optimizer.step()
        self.companion_optimizer.zero_grad(set_to_none=True)

    def _average_gradients(self, module: torch.nn.Module | None = None):
        """Every process ends the step with the mean of all processes' gradients (so with identical weights)."""
        if self.accelerator.num_processes == 1:
            return
        grads = [p.grad for p in (module or self.model).parameters() if p.grad is not None]
        flat = self.accelerator.reduce(torch.cat([g.flatten() for g in grads]), reduction="mean")
        for g, mean in zip(grads, flat.split([g.numel() for g in grads])):
            g.copy_(mean.view_as(g))

    def save(self):
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.accelerator.save_state(str(self.run_dir / "state"))
        if self.is_main:
            (self.run_dir / "trainer.json").write_text(json.dumps({"step": self.step, "seconds": self.seconds}))

    def _trim_losses(self):
        """On resume, drop logged steps the saved state had not reached (they are trained again)."""
        if not (self.is_main and self.losses_path.exists()):
            return
        with open(self.losses_path, newline="") as f:
            rows = list(csv.reader(f))
        keep = rows[:1] + [r for r in rows[1:] if int(r[0]) < self.step]
        with open(self.losses_path, "w", newline="") as f:
            csv.writer(f).writerows(keep)

    def _log(self, step: int, logs: dict, lr: float):
        """Append this step's logs, averaged over processes, and its learning rate (a collective: every process
        calls it)."""
        values = torch.tensor(list(logs.values()), dtype=torch.float64, device=self.device)
        values = self.accelerator.reduce(values, reduction="mean").tolist()
        if not self.is_main:
            return
        new = not self.losses_path.exists()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.losses_path, "a", newline="") as f:
            out = csv.writer(f)
            if new:
                out.writerow(["step", *logs, "lr"])
            out.writerow([step, *(f"{v:.6g}" for v in values), f"{lr:.6g}"])

    def run(self, loss_fn: Callable[[int], tuple[torch.Tensor, dict]], desc: str,
            every: Callable[[int], None] | None = None) -> float:
        """Train to `steps`; returns total wall seconds (across resumes). Stopped by a signal (`stop_requests`), it
        saves after the step in hand and exits (SystemExit, naming the step)."""
        self.model.train()
        bar = tqdm(range(self.step, self.steps), initial=self.step, total=self.steps, desc=desc,
                   disable=not self.is_main)
        with stop_requests(self.accelerator.num_processes == 1) as stop:
            self._steps(bar, loss_fn, every, stop)
        self.model.eval()
        self.accelerator.wait_for_everyone()
        return self.seconds

    def _steps(self, bar, loss_fn, every, stop: StopRequest):
        t0 = time.time()
        for step in bar:
            with self.accelerator.autocast():
                loss, logs = loss_fn(step)
            self.accelerator.backward(loss)
            self._average_gradients()
            self.accelerator.clip_grad_norm_(self.model.parameters(), 1.0)
            lr = self.scheduler.get_last_lr()[0]                     # the rate this step trains at
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            if every is not None:
                every(step)
            self.step = step + 1
            self._log(step, logs, lr)
            if step % 10 == 0:
                bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items()})
            if self.step % self.save_every == 0 or self.step == self.steps or stop.signal is not None:
                self.seconds += time.time() - t0
                t0 = time.time()
                self.save()
            if stop.signal is not None and self.step < self.steps:
                bar.close()
                raise SystemExit(f"stopped by {signal.Signals(stop.signal).name} at step {self.step} of {self.steps}; "
                                 f"the state is saved in {self.run_dir}: the same command resumes")

    def unwrapped(self):
        return self.accelerator.unwrap_model(self.plain)

    def export_losses(self, out: Path):
        """Copy the loss log beside the checkpoint written to `out`."""
        if self.losses_path.exists():
            Path(out).mkdir(parents=True, exist_ok=True)
            (Path(out) / "losses.csv").write_bytes(self.losses_path.read_bytes())


def time_steps(model: torch.nn.Module, loss: Callable, device: torch.device, mixed_precision: str = "no",
               steps: int = 20, warmup: int = 5, companion: torch.nn.Module | None = None, compile: bool = False,
               record: list | None = None) -> float:
    """Seconds per training step (forward, backward, AdamW) of throwaway copies of `model` (and `companion`) on
    `device`: `loss(model, companion, companion_step, step) -> loss`, where `companion_step(loss)` trains the
    companion (a tokenizer's discriminator) by one step. `compile`: the loss gets the copy through torch.compile
    (compiled in the warm-up steps, as `Trainer` does). `record`: each timed step's seconds are appended to it."""
    model = copy.deepcopy(model).to(device).train()
    opt = torch.optim.AdamW(model.parameters())
    run = torch.compile(model) if compile else model
    companion_step = None
    if companion is not None:
        companion = copy.deepcopy(companion).to(device).train()
        companion_opt = torch.optim.AdamW(companion.parameters())

        def companion_step(value):
            companion_opt.zero_grad(set_to_none=True)
            value.backward()
            companion_opt.step()
            companion_opt.zero_grad(set_to_none=True)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mixed_precision)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for step in range(warmup + steps):
        if step == warmup:
            sync()
            t0 = last = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            value = loss(run, companion, companion_step, step)
        value.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if record is not None and step >= warmup:
            sync()
            now = time.perf_counter()
            record.append(now - last)
            last = now
    sync()
    return (time.perf_counter() - t0) / steps


class Rendezvous:
    """The processes of one suite phase meeting in a folder: each posts a value under a tag, then waits until all
    `count` have posted theirs."""

    def __init__(self, folder: Path, name: str, count: int, timeout: float = 1800.0):
        self.folder, self.name, self.count, self.timeout = Path(folder), name, count, timeout
        self.folder.mkdir(parents=True, exist_ok=True)

    def meet(self, tag: str, value=None) -> dict:
        tmp = self.folder / f".{tag}-{self.name}.tmp"
        tmp.write_text(json.dumps(value))
        tmp.replace(self.folder / f"{tag}-{self.name}.json")
        deadline = time.time() + self.timeout
        while len(posted := sorted(self.folder.glob(f"{tag}-*.json"))) < self.count:
            if time.time() > deadline:
                raise RuntimeError(f"{self.folder}: {len(posted)} of {self.count} processes reached '{tag}' in "
                                   f"{self.timeout:.0f} s")
            time.sleep(0.2)
        return {p.stem[len(tag) + 1:]: json.loads(p.read_text()) for p in posted}


def calibrated_steps(sync: Path, name: str, count: int, seconds: float, probe: Callable[[], float],
                     multiple: int = 50, margin: float = 0.8) -> int:
    """One step count for `count` processes that train side by side on one device for `seconds`: once all are
    ready, each times its own step (`probe`, seconds per step) with the others running too, and all take
    margin x seconds / the slowest step, a multiple of `multiple`: the same training samples for every model. The
    count is kept in `sync/steps.json`, so a resumed process trains to the same count."""
    sync = Path(sync)
    agreed = sync / "steps.json"
    if agreed.exists():
        return json.loads(agreed.read_text())["steps"]
    meeting = Rendezvous(sync, name, count)
    meeting.meet("ready")
    rates = meeting.meet("rate", probe())
    slowest = max(rates.values())
    steps = max(multiple, int(margin * seconds / slowest) // multiple * multiple)
    tmp = sync / f".steps-{name}.tmp"                   # every process computes the same; the first one stays
    tmp.write_text(json.dumps({"steps": steps, "seconds": seconds, "seconds_per_step": rates}))
    if not agreed.exists():
        tmp.replace(agreed)
    else:
        tmp.unlink()
    logger.info("%s: %d steps for %.0f s (slowest step %.4f s: %s)", name, steps, seconds, slowest,
                max(rates, key=rates.get))
    return steps


def command_line() -> str:
    return "python -m mindmap " + " ".join(sys.argv[1:]) if sys.argv[0].endswith("__main__.py") else " ".join(sys.argv)


def data_line(styles) -> str:
    """The model card's data line: each style's art, licence and npm package."""
    from ..data.emoji import LICENSES, PACKAGES
    arts = "; ".join(f"{s}: {LICENSES[s]}, npm `{PACKAGES[s][0]}@{PACKAGES[s][1]}`" for s in styles)
    return f"emoji art in {len(styles)} styles ({arts})"


def write_card(folder: Path, title: str, summary: str, command: str, steps: int, seconds: float,
               metrics: dict, extra: str = "", styles=("twitter", "google"), samples: int | None = None):
    """The model card: what it is, the data, the exact command, steps (and samples seen), time, hardware,
    metrics."""
    seen = f" ({samples:,} training samples seen)" if samples else ""
    rows = "\n".join(f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in metrics.items())
    text = f"""# {title}

{summary}

## Training
- Data: {data_line(styles)}, composited on white, train split only (`python -m mindmap data emoji`).
- Command: `{command}`
- Steps: {steps}{seen}
- Wall time: {seconds / 60:.1f} min
- Hardware: {hardware()}
- torch {torch.__version__}

## Measured (held-out split)
| metric | value |
|---|---|
{rows}
{extra}
"""
    Path(folder, "README.md").write_text(text)
