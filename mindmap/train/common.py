"""The training harness every model shares: accelerate, seeded batches, resume, model cards."""
from __future__ import annotations

import json
import logging
import platform
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from accelerate import Accelerator
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


class Trainer:
    """Runs `loss_fn(step) -> (loss, logs)` for `steps` steps with AdamW and a cosine schedule.

    State (model, optimizer, scheduler, step) is saved to `run_dir` every `save_every` steps and at
    the end; constructing a Trainer on the same `run_dir` resumes from it.
    """

    def __init__(self, model: torch.nn.Module, steps: int, lr: float, run_dir: Path, warmup: int = 100,
                 weight_decay: float = 0.0, save_every: int = 250, cpu: bool = False):
        self.accelerator = Accelerator(cpu=cpu)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=weight_decay)
        sched = get_cosine_schedule_with_warmup(opt, min(warmup, steps // 10), steps)
        self.model, self.optimizer, self.scheduler = self.accelerator.prepare(model, opt, sched)
        self.steps, self.save_every, self.run_dir = steps, save_every, Path(run_dir)
        self.step, self.seconds = 0, 0.0
        if (self.run_dir / "trainer.json").exists():
            self.accelerator.load_state(str(self.run_dir / "state"))
            info = json.loads((self.run_dir / "trainer.json").read_text())
            self.step, self.seconds = info["step"], info["seconds"]
            logger.info("resumed %s at step %d", self.run_dir, self.step)

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    def save(self):
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.accelerator.save_state(str(self.run_dir / "state"))
        (self.run_dir / "trainer.json").write_text(json.dumps({"step": self.step, "seconds": self.seconds}))

    def run(self, loss_fn: Callable[[int], tuple[torch.Tensor, dict]], desc: str,
            every: Callable[[int], None] | None = None) -> float:
        """Train to `steps`; returns total wall seconds (across resumes)."""
        self.model.train()
        bar = tqdm(range(self.step, self.steps), initial=self.step, total=self.steps, desc=desc)
        t0 = time.time()
        for step in bar:
            loss, logs = loss_fn(step)
            self.accelerator.backward(loss)
            self.accelerator.clip_grad_norm_(self.model.parameters(), 1.0)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            if every is not None:
                every(step)
            self.step = step + 1
            if step % 10 == 0:
                bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items()})
            if self.step % self.save_every == 0 or self.step == self.steps:
                self.seconds += time.time() - t0
                t0 = time.time()
                self.save()
        self.model.eval()
        return self.seconds

    def unwrapped(self):
        return self.accelerator.unwrap_model(self.model)


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
