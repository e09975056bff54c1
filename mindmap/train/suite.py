"""`python -m mindmap train suite`: the arena, from the tokenizers up, by one resumable recipe.

Two phases, each a set of `python -m mindmap train ...` processes run side by side (`--jobs` at a time):
1. the five tokenizers (VQ, RQ, MQ, multi-scale, KL), sharpened by feature matching and a patch discriminator;
2. the six trainable class generators on them, every one at the `arena` preset (parameters matched within 15%)
   and the same batch and steps, so every paradigm sees the same training samples; then the hybrid, composed
   from the raster and masked models (no training of its own).
A phase's steps are either given or, with `--seconds`, measured: once every process of the phase is ready, each
times its own step with the others running, and all take the count the slowest can finish in that time
(`calibrated_steps`). Every process saves its state every 250 steps under `--run-dir`; running the same command
again skips the finished checkpoints (their manifest is written last) and resumes the others where they stopped.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

logger = logging.getLogger(__name__)

TOKENIZERS = {"vq-emoji32": ["--kind", "vq"], "rq-emoji32": ["--kind", "rq", "--depth", "4"],
              "mq-emoji32": ["--kind", "mq"], "msvq-emoji32": ["--kind", "msvq"], "kl-emoji32": ["--kind", "kl"]}
GENERATORS = {"raster-emoji32": ("raster", "vq-emoji32"), "masked-emoji32": ("masked", "vq-emoji32"),
              "dnd-emoji32": ("depth", "rq-emoji32"), "mq-stack-emoji32": ("mq", "mq-emoji32"),
              "var-emoji32": ("scale", "msvq-emoji32"), "mar-emoji32": ("mar", "kl-emoji32")}
HYBRID = ("hybrid-emoji32", "raster-emoji32", "masked-emoji32")
# `--ablation`: the VQ tokenizer by the same run without the sharpening losses, to measure what they add.
ABLATION = {"vq-plain-emoji32": ["--kind", "vq"]}
PRESET = "arena"


def finished(folder: Path) -> bool:
    return (folder / "mindmap.json").is_file()


def phase_command(name: str, out: Path, run_dir: Path, args, calibrate: tuple | None) -> list[str]:
    """The `train` command line of one job of the suite."""
    cmd = [sys.executable, "-m", "mindmap", "train", *args, "--out", str(out / name), "--run-dir",
           str(run_dir / name)]
    if calibrate is not None:
        sync, count, seconds = calibrate
        cmd += ["--calibrate", str(seconds), "--sync", str(sync), "--sync-count", str(count)]
    return cmd


def job_env(parallel: int) -> dict:
    """A job's environment: the machine's cores shared out between the jobs running side by side (by default each
    job's torch takes every core for its CPU-side work: six jobs on 16 cores would run 96 threads)."""
    threads = str(max(1, (os.cpu_count() or 1) // parallel))
    return {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}


def run_phase(title: str, jobs: dict[str, list[str]], out: Path, run_dir: Path, parallel: int,
              seconds: float | None) -> dict:
    """Run every unfinished job (`name -> train arguments`), `parallel` at a time; each job's log goes to
    run_dir/<name>.log. Returns name -> wall seconds (None for those already finished)."""
    todo = {n: a for n, a in jobs.items() if not finished(out / n)}
    times = {n: None for n in jobs if n not in todo}
    if not todo:
        logger.info("%s: every checkpoint already written", title)
        return times
    sync = run_dir / f"sync-{title}"
    calibrate = None
    if seconds is not None:
        if parallel < len(todo):
            raise ValueError(f"--seconds measures the {title} side by side: --jobs must be at least {len(todo)}")
        if not (sync / "steps.json").exists():     # a calibration cut off before it agreed starts again
            for stale in sync.glob("*.json"):
                stale.unlink()
        calibrate = (sync, len(todo), seconds)
    running, queue = {}, list(todo)
    run_dir.mkdir(parents=True, exist_ok=True)
    while queue or running:
        while queue and len(running) < parallel:
            name = queue.pop(0)
            log = open(run_dir / f"{name}.log", "a")
            cmd = phase_command(name, out, run_dir, todo[name], calibrate)
            log.write(f"$ {' '.join(cmd)}\n")
            log.flush()
            running[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=job_env(parallel)), log,
                             time.time())
            logger.info("%s: started %s", title, name)
        time.sleep(1.0)
        for name, (proc, log, t0) in list(running.items()):
            if proc.poll() is None:
                continue
            log.close()
            del running[name]
            times[name] = time.time() - t0
            if proc.returncode != 0:
                for other, (p, _, _) in running.items():
                    p.terminate()
                tail = (run_dir / f"{name}.log").read_text().splitlines()[-15:]
                raise RuntimeError(f"{title}: {name} failed (exit {proc.returncode}); the end of "
                                   f"{run_dir / (name + '.log')}:\n" + "\n".join(tail))
            logger.info("%s: %s done in %.0f s", title, name, times[name])
    return times


def run_suite(out: Path, run_dir: Path, tokenizer_steps: int = 3000, generator_steps: int = 1250,
              tokenizer_seconds: float | None = None, generator_seconds: float | None = None,
              tokenizer_batch: int = 128, generator_batch: int = 256, lr: float = 1e-3, parallel: int = 1,
              features: float = 0.5, adversarial: float = 0.1, mixed_precision: str = "no",
              only: str = "all", ablation: bool = False, compile: bool = False) -> dict:
    """The whole arena into `out` (see the module docstring); `only`: "tokenizers", "generators" or "all";
    `ablation`: also the plain VQ tokenizer (`ABLATION`), in the tokenizers' phase; `compile`: the generators
    train through torch.compile."""
    if only not in ("all", "tokenizers", "generators"):
        raise ValueError(f"--only must be all, tokenizers or generators, got {only!r}")
    if parallel < 1:
        raise ValueError(f"--jobs must be at least 1, got {parallel}")
    out, run_dir = Path(out), Path(run_dir)
    report = {}
    if only in ("all", "tokenizers"):
        plain = ABLATION if ablation else {}
        tok_args = {name: ["tokenizer", *kind, "--steps", str(tokenizer_steps), "--batch", str(tokenizer_batch),
                           "--lr", str(lr), "--features", str(0.0 if name in plain else features),
                           "--adversarial", str(0.0 if name in plain else adversarial)]
                    for name, kind in {**TOKENIZERS, **plain}.items()}
        report["tokenizers"] = run_phase("tokenizers", tok_args, out, run_dir, parallel, tokenizer_seconds)
    if only in ("all", "generators"):
        gen_args = {name: ["generator", "--paradigm", paradigm, "--tokenizer", str(out / tok), "--preset", PRESET,
                           "--steps", str(generator_steps), "--batch", str(generator_batch), "--lr", str(lr),
                           "--mixed-precision", mixed_precision, "--curve-every", "250",
                           *(["--compile"] if compile else [])]
                    for name, (paradigm, tok) in GENERATORS.items()}
        report["generators"] = run_phase("generators", gen_args, out, run_dir, parallel, generator_seconds)
        name, raster, masked = HYBRID
        if not finished(out / name):
            from .hybrid import compose_hybrid
            compose_hybrid(out / name, raster=out / raster, masked=out / masked)
    (run_dir / "suite.json").write_text(json.dumps(report, indent=1))
    return report
