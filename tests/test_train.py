"""Training: two processes share each batch and end with the same weights; mixed precision; a loss log that
survives an interrupted run."""
from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mindmap.checkpoint import write_manifest
from mindmap.data import build_emoji, load_emoji
from mindmap.generators.raster import raster_loss
from mindmap.tokenizers.kl import KLTokenizer
from mindmap.train.common import Trainer, batch_indices

from conftest import tiny_raster

ROOT = Path(__file__).resolve().parent.parent


def tiny_kl_folder(folder: Path) -> Path:
    """A tokenizer checkpoint on the real emoji data's classes: a tiny untrained KL autoencoder, 32 px -> 8x8 tokens."""
    build_emoji()                                    # a no-op when `python -m mindmap data emoji` already ran
    torch.manual_seed(0)
    tok = KLTokenizer(down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                      block_out_channels=(8, 16, 16), latent_channels=4, norm_num_groups=4, sample_size=32)
    tok.save_pretrained(folder / "tokenizer", safe_serialization=True)
    write_manifest(folder, {"kind": "tokenizer", "tokenizer": "kl", "components": {"tokenizer": "tokenizer"},
                            "image_size": 32, "grid": 8, "classes": load_emoji(32).classes})
    return folder


def test_two_processes_train_on_their_own_shards_and_end_with_identical_weights(tmp_path):
    # MAR: its loss calls the diffusion head outside the model's forward, where a DDP wrapper would not sync.
    tok = tiny_kl_folder(tmp_path / "kl")
    record = tmp_path / "record"
    record.mkdir()
    steps, batch = 3, 8
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "tests" / "ddp_worker.py"), "--tokenizer", tok, "--paradigm", "mar", "--out", tmp_path / "out",
           "--run-dir", tmp_path / "run", "--record", record, "--steps", steps, "--batch", batch]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((record / f"rank{k}.json").read_text()) for k in (0, 1)]
    assert [r["processes"] for r in ranks] == [2, 2]
    train_idx = torch.from_numpy(load_emoji(32).indices("train"))
    for step in range(steps):
        mine, theirs = ranks[0]["seen"][step], ranks[1]["seen"][step]
        assert len(mine) == len(theirs) == batch // 2 and mine != theirs            # different samples ...
        assert mine + theirs == batch_indices(train_idx, batch, 0, step).tolist()  # ... that make up the batch
    assert ranks[0]["weights"] == ranks[1]["weights"]                               # gradients were averaged
    with open(tmp_path / "out" / "losses.csv") as f:                                # one checkpoint, one log
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == list(range(steps)) and all(math.isfinite(float(r["loss"])) for r in rows)
    cosine = [1e-3 * 0.5 * (1 + math.cos(math.pi * s / steps)) for s in range(steps)]   # one schedule step a step
    assert [float(r["lr"]) for r in rows] == pytest.approx(cosine, rel=1e-4)
    assert (tmp_path / "out" / "generator" / "config.json").is_file()


def _codes_loss(trainer: Trainer, flags: list):
    codes = torch.randint(0, 32, (64, 64), generator=torch.Generator().manual_seed(0))

    def loss_fn(step):
        if step == 3 and "crash" in flags:
            raise KeyboardInterrupt("interrupted")
        flags.append(torch.is_autocast_enabled("cpu"))
        rows = trainer.batch(torch.arange(64), 8, 0, step)
        loss = raster_loss(trainer.model, codes[rows], torch.zeros(8, dtype=torch.long), None)
        return loss, {"loss": loss.item()}
    return loss_fn


def test_bf16_autocast_and_a_loss_log_that_survives_an_interrupted_run(tmp_path):
    run = tmp_path / "run"
    trainer = Trainer(tiny_raster(), steps=5, lr=1e-3, run_dir=run, save_every=2, cpu=True, mixed_precision="bf16")
    flags = ["crash"]
    with pytest.raises(KeyboardInterrupt):
        trainer.run(_codes_loss(trainer, flags), desc="test")
    assert flags[1:] == [True, True, True]                          # the loss ran under bf16 autocast
    again = Trainer(tiny_raster(seed=1), steps=5, lr=1e-3, run_dir=run, save_every=2, cpu=True,
                    mixed_precision="bf16")
    assert again.step == 2                                          # the last state saved, not the last step run
    again.run(_codes_loss(again, []), desc="test")
    with open(run / "losses.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [0, 1, 2, 3, 4]        # step 2 logged once, though trained twice
    assert all(math.isfinite(float(r["loss"])) and float(r["lr"]) > 0 for r in rows)
    with pytest.raises(ValueError, match="mixed-precision must be one of"):
        Trainer(tiny_raster(), steps=1, lr=1e-3, run_dir=tmp_path / "x", mixed_precision="fp8")


def test_a_signal_stops_the_run_after_the_step_in_hand_saved_and_the_same_run_resumes(tmp_path):
    """SIGTERM (or Ctrl-C) mid-step: that step finishes, the state is saved although it is no periodic save, the
    run exits naming the step, and a new trainer on the same folder resumes there."""
    import signal
    run = tmp_path / "run"
    trainer = Trainer(tiny_raster(), steps=6, lr=1e-3, run_dir=run, save_every=5, cpu=True)
    inner = _codes_loss(trainer, [])

    def loss_fn(step):
        if step == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return inner(step)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit, match="stopped by SIGTERM at step 3 of 6"):
        trainer.run(loss_fn, desc="test")
    assert signal.getsignal(signal.SIGTERM) is before                # the handlers are given back
    again = Trainer(tiny_raster(seed=1), steps=6, lr=1e-3, run_dir=run, save_every=5, cpu=True)
    assert again.step == 3
    for a, b in zip(trainer.unwrapped().parameters(), again.unwrapped().parameters()):
        assert torch.equal(a, b)                                    # the weights after step 3, not a fresh model
    again.run(_codes_loss(again, []), desc="test")
    with open(run / "losses.csv") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == list(range(6))


def test_a_compiled_run_trains_the_same_model_and_resumes_without_compiling(tmp_path):
    """`--compile`: the loss calls the model through torch.compile; the state saved is the plain model's, so an
    eager trainer resumes it, and the run ends where an eager run from the same seed does."""
    eager = Trainer(tiny_raster(), steps=4, lr=1e-3, run_dir=tmp_path / "eager", save_every=2, cpu=True)
    eager.run(_codes_loss(eager, []), desc="eager")
    compiled = Trainer(tiny_raster(), steps=4, lr=1e-3, run_dir=tmp_path / "compiled", save_every=2, cpu=True,
                       compile=True)
    assert isinstance(compiled.model, torch._dynamo.eval_frame.OptimizedModule)
    with pytest.raises(KeyboardInterrupt):
        compiled.run(_codes_loss(compiled, ["crash"]), desc="compiled")
    resumed = Trainer(tiny_raster(seed=1), steps=4, lr=1e-3, run_dir=tmp_path / "compiled", save_every=2, cpu=True)
    assert resumed.step == 2
    resumed.run(_codes_loss(resumed, []), desc="resumed")
    for (name, a), b in zip(eager.unwrapped().named_parameters(), resumed.unwrapped().parameters()):
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-4, msg=name)


def test_the_learning_curve_logs_every_n_steps_and_its_last_row_is_the_cards_pair(tmp_path):
    """`--curve-every N`: held-out and training loss every N steps and at the last, into `heldout.csv` beside the
    model; the manifest's held-out and training figures are that last row (the same training records, a draw
    across every style), not a second measurement on other records."""
    from mindmap.checkpoint import read_manifest
    from mindmap.train.generator import train_generator
    tok = tiny_kl_folder(tmp_path / "kl")
    metrics = train_generator(tmp_path / "out", tok, paradigm="mar", steps=3, batch=8, preset="tiny", cpu=True,
                              run_dir=tmp_path / "run", styles=["twitter", "google"], curve_every=2)
    with open(tmp_path / "out" / "heldout.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(int(r["step"]), int(r["samples_seen"])) for r in rows] == [(2, 16), (3, 24)]
    assert all(math.isfinite(float(r[k])) for r in rows for k in ("heldout", "train"))
    last = rows[-1]
    assert metrics["heldout_ce"] == pytest.approx(float(last["heldout"]), rel=1e-5)
    assert metrics["train_ce"] == pytest.approx(float(last["train"]), rel=1e-5)
    assert read_manifest(tmp_path / "out")["metrics"]["train_ce"] == metrics["train_ce"]
