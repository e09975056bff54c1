"""The arena's training recipe: sharpened tokenizers (feature matching, a patch discriminator at VQGAN's adaptive
weight, saved and resumed with the rest), parameter-matched generator presets, one step count agreed by every
process of a phase, and a suite that skips what is done and names what failed."""
from __future__ import annotations

import csv
import json
import sys
import threading
from pathlib import Path

import pytest
import torch

from mindmap import paradigms
from mindmap.data import build_emoji
from mindmap.eval.run import load_classifier
from mindmap.train import suite
from mindmap.train.adversarial import FeatureMatching, PatchDiscriminator, adaptive_weight
from mindmap.train.common import calibrated_steps
from mindmap.train.tokenizer import train_tokenizer


def test_arena_presets_match_parameters_within_15_percent():
    sizes = {}
    for name, (paradigm, _) in suite.GENERATORS.items():
        spec = paradigms.get(paradigm)
        extra = {"raster": {}, "masked": {}, "depth": {"depth": 4}, "mq": {"min_count": 16},
                 "scale": {"scales": (1, 2, 3, 4, 5, 6, 8), "code_dim": 16}, "mar": {"token_dim": 8}}[paradigm]
        alphabet = {} if paradigm == "mar" else {"vocab_size": 512}
        model = spec.components["generator"](num_classes=99, num_styles=6, grid=8, **alphabet, **extra,
                                             **spec.recipe.presets[suite.PRESET])
        sizes[name] = sum(p.numel() for p in model.parameters())
    assert max(sizes.values()) / min(sizes.values()) <= 1.15, sizes


def test_feature_matching_reads_the_frozen_classifier_and_only_moves_the_reconstruction():
    matcher = FeatureMatching(load_classifier())
    real = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    recon = (real + 0.3 * torch.randn(real.shape, generator=torch.Generator().manual_seed(1))).requires_grad_(True)
    assert matcher(real, real).item() == pytest.approx(0.0, abs=1e-10)
    loss = matcher(recon, real)
    loss.backward()
    assert loss.item() > 0 and recon.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in matcher.parameters())
    matcher.train()                                 # stays in eval mode: BatchNorm statistics never move
    assert not any(m.training for m in matcher.modules())


def test_adaptive_weight_is_the_ratio_of_the_two_gradients_at_the_last_layer():
    layer = torch.nn.Linear(3, 2)
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    rec, gan = layer(x).pow(2).mean(), -3.0 * layer(x).sum()
    g_rec = torch.autograd.grad(rec, layer.weight, retain_graph=True)[0]
    g_gan = torch.autograd.grad(gan, layer.weight, retain_graph=True)[0]
    assert adaptive_weight(rec, gan, layer.weight).item() == pytest.approx((g_rec.norm() / g_gan.norm()).item(),
                                                                            rel=1e-4)
    patches = PatchDiscriminator()(torch.zeros(2, 3, 32, 32))
    assert patches.shape == (2, 1, 8, 8)            # a logit per 4x4 patch of the grid


def test_a_sharpened_tokenizer_trains_its_discriminator_late_and_resumes_it(tmp_path):
    build_emoji()                                    # a no-op when `python -m mindmap data emoji` already ran
    kwargs = dict(kind="vq", steps=4, batch=4, channels=(16, 16, 16), codebook_size=32, features=0.5,
                  adversarial=0.1, gan_start=0.5, run_dir=tmp_path / "run", cpu=True)
    metrics = train_tokenizer(tmp_path / "tok", **kwargs)
    assert metrics["images"] > 500
    with open(tmp_path / "tok" / "losses.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [0, 1, 2, 3]
    assert [float(r["gan_weight"]) > 0 for r in rows] == [False, False, True, True]   # from half the steps on
    assert all(float(r["features"]) > 0 for r in rows)
    state = tmp_path / "run" / "state"
    assert (state / "model_1.safetensors").is_file()                                   # the discriminator's weights
    card = (tmp_path / "tok" / "README.md").read_text()
    assert "patch discriminator" in card and "feature-matching" in card and "fluent-flat" in card
    with pytest.raises(ValueError, match="--adversarial trains a discriminator"):
        train_tokenizer(tmp_path / "x", **{**kwargs, "run_dir": tmp_path / "x-run"}, mixed_precision="fp16")
    with pytest.raises(ValueError, match="--features must be a finite number >= 0"):
        train_tokenizer(tmp_path / "x", **{**kwargs, "features": float("nan")})


def test_every_process_of_a_phase_agrees_on_one_step_count(tmp_path):
    rates = {"a": 0.010, "b": 0.040, "c": 0.025}
    got = {}

    def worker(name):
        got[name] = calibrated_steps(tmp_path, name, 3, seconds=100.0, probe=lambda: rates[name])

    threads = [threading.Thread(target=worker, args=(n,)) for n in rates]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert got == {"a": 2000, "b": 2000, "c": 2000}             # 0.8 x 100 s / 0.040 s, a multiple of 50
    agreed = json.loads((tmp_path / "steps.json").read_text())
    assert agreed["steps"] == 2000 and agreed["seconds_per_step"] == rates
    # a resumed process keeps the agreed count and times nothing
    assert calibrated_steps(tmp_path, "a", 3, seconds=5.0, probe=lambda: pytest.fail("probed again")) == 2000


def test_the_suite_skips_finished_jobs_and_names_a_failed_one(tmp_path, monkeypatch):
    out, runs = tmp_path / "out", tmp_path / "runs"
    (out / "done").mkdir(parents=True)
    (out / "done" / "mindmap.json").write_text("{}")

    def fake(name, out_, run_dir, args, calibrate):        # a job: writes its manifest, or fails loudly
        code = ("import sys; print('boom'); sys.exit(3)" if args == ["fail"] else
                f"import pathlib; p = pathlib.Path({str(out_ / name)!r}); p.mkdir(parents=True); "
                f"(p / 'mindmap.json').write_text('{{}}')")
        return [sys.executable, "-c", code]

    monkeypatch.setattr(suite, "phase_command", fake)
    times = suite.run_phase("toy", {"done": ["ok"], "new": ["ok"]}, out, runs, parallel=2, seconds=None)
    assert times["done"] is None and times["new"] > 0 and suite.finished(out / "new")
    with pytest.raises(RuntimeError, match=r"toy: bad failed \(exit 3\)(.|\n)*boom"):
        suite.run_phase("toy", {"bad": ["fail"]}, out, runs, parallel=1, seconds=None)
    with pytest.raises(ValueError, match="--jobs must be at least 2"):
        suite.run_phase("toy", {"x": ["ok"], "y": ["ok"]}, out, runs, parallel=1, seconds=10.0)
