"""The training harness every model shares: accelerate, seeded batches sharded over processes, mixed
precision, resume, a loss log, model cards.

One process or many (`accelerate launch` / `torchrun`, gloo on CPU): every process draws the same global
batch from (seed, step) and trains on its own shard of it, so a run on N processes sees the same data as
a run on one, and a resumed run the same as an uninterrupted one.
"""
from __future__ import annotations

import csv
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from accelerate import Accelerator, DataLoaderConfiguration
from diffusers.optimization import get_cosine_schedule_with_warmup
from tqdm import tqdm

logger = logging.getLogger(__name__)


def hardware() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (CUDA)"
    return f"CPU, {torch.get_num_threads()} threads ({platform.processor() or platform.machine()})"


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
                 weight_decay: float = 0.0, save_every: int = 250, cpu: bool = False, mixed_precision: str = "no"):
        if mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"--mixed-precision must be one of {', '.join(MIXED_PRECISION)}, got {mixed_precision!r}")
        # Without a GPU the processes of `torchrun` / `accelerate launch` can only meet over gloo on the CPU.
        # split_batches: each step's global batch is split over the processes, so the schedule steps once a step.
        self.accelerator = Accelerator(cpu=cpu or not torch.cuda.is_available(), mixed_precision=mixed_precision,
                                       dataloader_config=DataLoaderConfiguration(split_batches=True))
        launched = int(os.environ.get("WORLD_SIZE", "1"))
        if launched != self.accelerator.num_processes:
            raise RuntimeError(f"launched as {launched} processes but accelerate runs {self.accelerator.num_processes}"
                               "; every process would train on the same batches")
        # Not wrapped in DistributedDataParallel: losses call parts of the model outside its forward (MAR's
        # diffusion head), which DDP would not synchronise; `_average_gradients` does it for every parameter.
        self.model = self.accelerator.prepare_model(model, evaluation_mode=True)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=weight_decay)
        sched = get_cosine_schedule_with_warmup(opt, min(warmup, steps // 10), steps)
        self.optimizer, self.scheduler = self.accelerator.prepare(opt, sched)
        self.steps, self.save_every, self.run_dir = steps, save_every, Path(run_dir)
        self.step, self.seconds = 0, 0.0
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

    def _average_gradients(self):
        """Every process ends the step with the mean of all processes' gradients (so with identical weights)."""
        if self.accelerator.num_processes == 1:
            return
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
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
        """Train to `steps`; returns total wall seconds (across resumes)."""
        self.model.train()
        bar = tqdm(range(self.step, self.steps), initial=self.step, total=self.steps, desc=desc,
                   disable=not self.is_main)
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
            if self.step % self.save_every == 0 or self.step == self.steps:
                self.seconds += time.time() - t0
                t0 = time.time()
                self.save()
        self.model.eval()
        self.accelerator.wait_for_everyone()
        return self.seconds

    def unwrapped(self):
        return self.accelerator.unwrap_model(self.model)

    def export_losses(self, out: Path):
        """Copy the loss log beside the checkpoint written to `out`."""
        if self.losses_path.exists():
            Path(out).mkdir(parents=True, exist_ok=True)
            (Path(out) / "losses.csv").write_bytes(self.losses_path.read_bytes())


def command_line() -> str:
    return "python -m mindmap " + " ".join(sys.argv[1:]) if sys.argv[0].endswith("__main__.py") else " ".join(sys.argv)


def write_card(folder: Path, title: str, summary: str, command: str, steps: int, seconds: float,
               metrics: dict, extra: str = ""):
    """The model card: what it is, the data, the exact command, steps, time, hardware, metrics."""
    rows = "\n".join(f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in metrics.items())
    text = f"""# {title}

{summary}

## Training
- Data: emoji art (Twemoji, CC-BY 4.0; Noto Emoji, Apache 2.0) from the npm packages
  `emoji-datasource-twitter@16.0.0` and `emoji-datasource-google@16.0.0`, composited on white,
  train split only (`python -m mindmap data emoji`).
- Command: `{command}`
- Steps: {steps}
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
