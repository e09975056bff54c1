"""Masked parallel decoding (MaskGIT) and the AR-then-masked hybrid, on tiny random models."""
import math

import pytest
import torch

from mindmap.generators.masked import random_mask
from mindmap.sampling import SCHEDULES, cfg_at, commit_counts, open_fraction

from conftest import tiny_masked

N = 64  # the tiny models' 8x8 grid


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_schedule_counts_add_up_to_the_grid(schedule):
    for steps in range(1, N + 1):
        counts = commit_counts(schedule, steps, N)
        assert len(counts) == steps and sum(counts) == N and min(counts) >= 1
    assert commit_counts(schedule, N, N) == [1] * N                      # one cell per step
    assert commit_counts(schedule, 1, N) == [N]


def test_schedule_follows_its_curve():
    counts = commit_counts("cosine", 8, N)
    open_after = [N - sum(counts[:t + 1]) for t in range(8)]
    assert open_after == [round(N * math.cos(math.pi / 2 * (t + 1) / 8)) for t in range(7)] + [0]
    assert counts[0] < counts[-1]                                          # cosine: few first, many last
    assert open_fraction("arccos", 0.5) == pytest.approx(2 / 3)
    assert open_fraction("linear", 0.5) < open_fraction("arccos", 0.5) < open_fraction("cosine", 0.5)
    with pytest.raises(ValueError, match="steps"):
        commit_counts("cosine", N + 1, N)
    with pytest.raises(ValueError, match="schedule"):
        open_fraction("square", 0.5)


def test_cfg_schedules():
    assert [cfg_at(3.0, "constant", t, 4) for t in range(4)] == [3.0] * 4
    ramp = [cfg_at(3.0, "linear", t, 4) for t in range(4)]
    assert ramp == sorted(ramp) and ramp[-1] == 3.0 and ramp[0] == 1.0
    assert cfg_at(3.0, "linear", 0, 1) == 3.0                                 # a single step gets it all


def test_training_mask_share_follows_the_cosine_schedule():
    mask = random_mask(4000, N, torch.Generator().manual_seed(0))
    share = mask.float().mean(1)
    assert bool((mask.sum(1) >= 1).all())
    assert abs(share.mean().item() - 2 / math.pi) < 0.02                   # E[cos(pi/2 U)] = 2/pi


def test_masked_model_is_bidirectional():
    model = tiny_masked()
    codes = torch.randint(0, 32, (1, N), generator=torch.Generator().manual_seed(0))
    other = codes.clone()
    other[0, -1] = (other[0, -1] + 1) % 32
    with torch.no_grad():
        a, b = model(codes, torch.tensor([0])), model(other, torch.tensor([0]))
    assert a.shape == (1, N, 32)
    assert not torch.allclose(a[0, 0], b[0, 0])                            # the first cell sees the last


def test_masked_frames_follow_the_schedule_and_never_change_committed_cells(pipes):
    masked_pipe = pipes("tiny-masked")
    frames = list(masked_pipe.stream(**{"class": "food-fruit"}, seed=2, steps=8, schedule="cosine", cfg=2.0))
    counts = commit_counts("cosine", 8, N)
    assert len(frames) == 8 and frames[-1].done and frames[-1].schedule == counts
    prev = None
    for t, f in enumerate(frames):
        decided = ~f.mask[0]
        assert int(decided.sum()) == sum(counts[:t + 1]) and f.network_calls == t + 1
        assert int((f.order[0] == t).sum()) == counts[t]                      # this step's cells
        if prev is not None:
            was = ~prev.mask[0]
            assert torch.equal(f.tokens[0][was], prev.tokens[0][was])
            assert torch.equal(f.order[0][was], prev.order[0][was])
        prev = f
    assert bool((frames[-1].tokens >= 0).all())


@pytest.mark.parametrize("steps", [1, 3, N])
def test_masked_any_step_count(steps, pipes):
    masked_pipe = pipes("tiny-masked")
    f = masked_pipe(seed=0, steps=steps, batch=2)
    assert f.network_calls == steps and f.total == steps and bool((f.tokens >= 0).all())
    assert f.image.shape == (2, 3, 16, 16)


def test_masked_same_seed_same_image(pipes):
    masked_pipe = pipes("tiny-masked")
    a = masked_pipe(seed=5, steps=6, randomness=2.0)
    b = masked_pipe(seed=5, steps=6, randomness=2.0)
    c = masked_pipe(seed=6, steps=6, randomness=2.0)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.image, b.image)
    assert not torch.equal(a.tokens, c.tokens)


@pytest.mark.parametrize("values, name", [
    ({"steps": 0}, "steps"), ({"steps": N + 1}, "steps"), ({"steps": 2.5}, "steps"),
    ({"schedule": "square"}, "schedule"), ({"randomness": -1}, "randomness"),
    ({"cfg_schedule": "cubic"}, "cfg_schedule"), ({"prefix": 4}, "prefix"),
])
def test_masked_bad_controls_name_the_control(values, name, pipes):
    masked_pipe = pipes("tiny-masked")
    with pytest.raises(ValueError, match=name):
        masked_pipe(**values)


def test_hybrid_raster_prefix_then_masked_steps(pipes):
    hybrid_pipe = pipes("tiny-hybrid")
    f = hybrid_pipe(seed=1, prefix=20, steps=5, batch=2)
    order = f.order[0].flatten()
    assert torch.equal(order[:20], torch.arange(20))                          # raster order first
    assert bool((order[20:] >= 20).all()) and set(order[20:].tolist()) == set(range(20, 25))
    assert f.network_calls == 25 and f.total == 25 and f.schedule == [1] * 20 + commit_counts("cosine", 5, N - 20)


def test_hybrid_extremes_are_the_pure_paradigms(pipes):
    hybrid_pipe = pipes("tiny-hybrid")
    masked_pipe = pipes("tiny-masked")
    tiny_pipe = pipes("tiny-raster")
    common = dict(seed=9, cfg=2.0, temperature=1.2)
    assert torch.equal(hybrid_pipe(prefix=0, steps=7, **common).tokens, masked_pipe(steps=7, **common).tokens)
    pure = hybrid_pipe(prefix=N, steps=7, **common)
    assert pure.network_calls == N and torch.equal(pure.tokens, tiny_pipe(**common).tokens)


def test_hybrid_steps_are_bounded_by_the_cells_left(pipes):
    hybrid_pipe = pipes("tiny-hybrid")
    f = hybrid_pipe(seed=0, prefix=N - 3, steps=16)
    assert f.network_calls == N and f.schedule[-3:] == [1, 1, 1]
    with pytest.raises(ValueError, match="prefix"):
        hybrid_pipe(prefix=N + 1)


def test_hybrid_streams_prefix_then_each_step(pipes):
    hybrid_pipe = pipes("tiny-hybrid")
    frames = list(hybrid_pipe.stream(seed=0, prefix=16, steps=4))
    assert [f.step for f in frames] == [4, 8, 12, 16, 17, 18, 19, 20]          # prefix throttled, then every step
    assert frames[-1].done


def test_hybrid_refuses_parts_with_different_tokenizers(tmp_path, tiny_root):
    from conftest import tiny_tokenizer, write_tiny_checkpoint

    from mindmap.train.hybrid import compose_hybrid
    other = write_tiny_checkpoint(tmp_path / "other-masked", "masked")
    tiny_tokenizer(seed=1).save_pretrained(other / "tokenizer", safe_serialization=True)
    with pytest.raises(ValueError, match="different tokenizers"):
        compose_hybrid(tmp_path / "h", raster=tiny_root / "tiny-raster", masked=other)
    with pytest.raises(ValueError, match="raster model"):
        compose_hybrid(tmp_path / "h", raster=other, masked=tiny_root / "tiny-raster")
