"""Metrics on synthetic sets with known answers."""
import pytest
import torch

from mindmap.data import STYLES
from mindmap.eval.classifier import EmojiClassifier, augment
from mindmap.eval.metrics import (codebook_stats, fd_interval, frechet_distance, kernel_distance, nearest_distances,
                                  precision_recall, psnr, ssim)


def _gauss(n, d=8, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def test_frechet_distance_known_answers():
    a, b = _gauss(4000), _gauss(4000, seed=1)
    assert abs(frechet_distance(a, a)) < 1e-6
    assert frechet_distance(a, b) < 0.05                       # same distribution, sampling noise only
    shifted = frechet_distance(a, b + 2.0)                     # mean shift of 2 in 8 dims: 8 * 4 = 32
    assert abs(shifted - 32.0) < 1.0
    assert frechet_distance(a, b * 2) > frechet_distance(a, b * 1.5) > frechet_distance(a, b)
    # against the closed form for diagonal Gaussians: sum (s1 - s2)^2 with s = std
    assert abs(frechet_distance(a, b * 3) - 8 * (3 - 1) ** 2) < 1.5


def test_kid_is_the_unbiased_mmd_and_tells_laws_apart():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g) + 0.5

    def k(x, y):
        return (float(x @ y) / 3 + 1) ** 3
    # one subset of all 6 rows of each set: the MMD is the same whatever order the rows are drawn in
    mean, std = kernel_distance(a, b, subsets=1, subset_size=6)
    brute = (sum(k(a[i], a[j]) for i in range(6) for j in range(6) if i != j) / 30
              + sum(k(b[i], b[j]) for i in range(6) for j in range(6) if i != j) / 30
              - 2 * sum(k(x, y) for x in a for y in b) / 36)
    assert abs(mean - brute) < 1e-6 * abs(brute) and std == 0.0
    same = kernel_distance(torch.randn(2000, 8, generator=g), torch.randn(2000, 8, generator=g), subsets=20,
                           subset_size=500)
    moved = kernel_distance(torch.randn(2000, 8, generator=g), torch.randn(2000, 8, generator=g) + 0.5, subsets=20,
                            subset_size=500)
    assert abs(same[0]) < 3 * same[1] and moved[0] > 5 * moved[1] > 0   # unbiased: one law scores ~0
    with pytest.raises(ValueError, match="KID needs at least 2 rows"):
        kernel_distance(a[:1], b, subset_size=6)
    with pytest.raises(ValueError, match="KID needs at least 2 rows"):
        kernel_distance(a[:3], b)                                   # subsets of half the smaller set: 1 row


def test_fd_interval_covers_fd_at_its_sample_size_and_narrows_with_more_samples():
    """Coverage: over independent pairs of sample sets, the intervals hold the mean FD of fresh draws of the same
    sizes (what FD-emoji estimates) at least 75% of the time (95% intended, erring wide)."""
    g = torch.Generator().manual_seed(1)
    mix = torch.randn(16, 16, generator=g) * 0.3
    widths = []
    for n in (200, 3200):
        def draw(shift=0.0):
            return torch.randn(n, 16, generator=g) @ mix + shift
        expected = torch.tensor([frechet_distance(draw(0.2), draw()) for _ in range(30)]).mean().item()
        intervals = [fd_interval(draw(0.2), draw(), rounds=30, seed=k) for k in range(12)]
        covered = sum(low < expected < high for low, high in intervals) / len(intervals)
        assert covered >= 0.75, (n, expected, intervals)
        widths.append(sum(high - low for low, high in intervals) / len(intervals))
    assert widths[1] < widths[0] / 2


def test_precision_recall_known_answers():
    a, b = _gauss(1500), _gauss(1500, seed=1)
    same = precision_recall(a, b)
    assert same["precision"] > 0.6 and same["recall"] > 0.6
    far = precision_recall(a, b + 10)
    assert far["precision"] == 0 and far["recall"] == 0
    collapsed = precision_recall(a, b * 0.05)                   # all fakes at the centre: precise, no recall
    assert collapsed["precision"] > 0.95 and collapsed["recall"] < 0.2


def test_psnr_ssim_codebook_and_nearest():
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    assert torch.all(psnr(x, x) > 90) and torch.allclose(ssim(x, x), torch.ones(4), atol=1e-4)
    noisy = (x + 0.2 * torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    half = (x + noisy) / 2                                     # half the noise: both scores improve
    assert torch.all(ssim(x, noisy) < ssim(x, half)) and torch.all(ssim(x, half) < 0.999)
    assert torch.all(psnr(x, noisy) < psnr(x, half))
    stats = codebook_stats(torch.tensor([0, 1, 2, 3, 0, 1, 2, 3]), 8)
    assert stats["codebook_usage"] == 0.5 and abs(stats["perplexity"] - 4.0) < 1e-5
    d = nearest_distances(x[:2], x)
    assert torch.all(d == 0)


def test_classifier_features_and_augment_shapes():
    clf = EmojiClassifier(num_classes=5, image_size=16, channels=(8, 16)).eval()
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    assert clf.features(x).shape == (3, 256) and clf(x).shape == (3, 5)
    assert clf.features(torch.rand(2, 3, 32, 32)).shape == (2, 256)   # other sizes are area-resized
    y = augment(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1


def test_tuned_default_is_the_lowest_fd_and_becomes_the_models_default(tmp_path):
    from conftest import write_tiny_checkpoint

    from mindmap.eval.report import write_tuned_default
    from mindmap.pipeline import Pipeline
    write_tiny_checkpoint(tmp_path / "tiny")
    rows = [{"model": f"tiny cfg={c}", "controls": {"cfg": c}, "fd_emoji": fd, "paradigm": "raster", "params": 1e5,
             "tokens": 64, "network_calls": 64, "seconds_per_image": 0.1, "fd_emoji_floor": 1.0, "class_top1": 0.1,
             "class_top5": 0.2, "precision": 0.5, "recall": 0.5, "memorized": 0.0}
            for c, fd in ((1.0, 9.0), (2.0, 4.0), (3.0, 6.0))]
    assert write_tuned_default(rows, "cfg", "python -m mindmap eval ...", tmp_path) == {"cfg": 2.0}
    pipe = Pipeline.from_pretrained(tmp_path / "tiny")
    assert next(s for s in pipe.specs if s.name == "cfg").default == 2.0
    assert "`cfg` = 2.0, the lowest FD-emoji" in (tmp_path / "tiny" / "README.md").read_text()


def test_mq_trade_off_table_takes_the_tokenizer_psnr_at_one_mask_ratio():
    from conftest import tiny_mq_tokenizer

    from mindmap.eval.metrics import preview_psnr
    from mindmap.eval.report import mq_table
    tok = tiny_mq_tokenizer().eval()
    x = torch.rand(3, 3, tok.image_size, tok.image_size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    every = preview_psnr(tok, x)
    for ratio in (0.25, 0.5):
        one = preview_psnr(tok, x, ratios=(ratio,))
        label = f"mask ratio {ratio:.2f}"
        assert list(one) == [label] and abs(one[label] - every[label]) < 1e-4
    row = {"model": "mq-x mask_ratio=0.5", "controls": {"mask_ratio": 0.5}, "tokenizer_psnr": 19.87, "tokens": 32,
           "network_calls": 32, "seconds_per_image": 0.059, "fd_emoji": 49.26, "fd_emoji_floor": 34.29,
           "class_top1": 0.16, "class_top5": 0.36}
    table = mq_table([row, {"model": "raster-x", "controls": {}}])          # a row without the PSNR is not MQ
    lines = table.splitlines()
    assert len(lines) == 3 and lines[2].startswith("| mq-x | 0.5 | 19.87 | 32 | 32 | 0.059 | 49.26 | 0.16 / 0.36 |")


def test_generator_table_shows_intervals_kid_and_the_real_reference():
    from mindmap.eval.report import generator_table, reference_note
    row = {"model": "raster-x", "paradigm": "raster", "params": 2.5e6, "tokens": 64, "network_calls": 64,
           "seconds_per_image": 0.5, "fd_emoji": 28.49, "fd_emoji_interval": [27.1, 31.9], "kid": 0.01234,
           "kid_std": 0.0021, "fd_emoji_train": 29.66, "kid_train": 0.0087, "kid_train_std": 0.0019,
           "fd_emoji_real": 12.5, "kid_real": -0.0001, "kid_real_std": 0.0004, "class_top1": 0.33, "class_top5": 0.62,
           "precision": 0.7, "recall": 0.6, "memorized": 0.5}
    old = {k: v for k, v in row.items() if not k.startswith(("kid", "fd_emoji_"))} | {"fd_emoji_floor": 30.0}
    lines = generator_table([row, old]).splitlines()
    assert "| 28.49 [27.10, 31.90] | 12.34 ± 2.10 | 29.66 / 8.70 ± 1.90 |" in lines[2]
    assert "| 28.49 | — | 30.00 / — |" in lines[3]                   # a row measured before KID and intervals
    assert "FD-emoji 12.50 and KID x 10^3 -0.10 ± 0.40" in reference_note([old, row])
    assert reference_note([old]) == ""


def test_the_table_names_each_budget_and_the_reference_of_each_style_set():
    from mindmap.eval.report import generator_table, reference_note, scored_on
    base = {"model": "m", "paradigm": "raster", "params": 5.9e6, "tokens": 64, "network_calls": 64,
            "seconds_per_image": 0.04, "fd_emoji": 20.0, "fd_emoji_train": 16.8, "class_top1": 0.2, "class_top5": 0.4,
            "precision": 0.7, "recall": 0.7, "memorized": 0.8, "fd_emoji_real": 3.2, "kid_real": 0.0, "kid_real_std": 0.002}
    arena = base | {"samples_seen": [320000], "styles": list(STYLES)}
    hybrid = base | {"samples_seen": [160000, 144000], "styles": ["twitter", "google"], "fd_emoji_real": 8.86}
    lines = generator_table([arena, hybrid, base | {"samples_seen": None}]).splitlines()
    assert lines[0].startswith("| model | paradigm | params | training images seen | tokens |")
    assert lines[2].startswith("| m | raster | 5.9M | 320k | 64 |") and "| 160k + 144k | 64 |" in lines[3]
    assert "| 5.9M | — | 64 |" in lines[4]                                   # a budget never recorded
    assert scored_on([arena, arena]) == "scored against the held-out emoji of all 6 styles"
    assert scored_on([hybrid]) == "scored against the held-out emoji of twitter, google"
    assert scored_on([arena, hybrid]) == "each model scored against the held-out emoji of the styles it learnt"
    both = reference_note([arena, hybrid, arena])        # one reference per style set, never one for all
    assert both.startswith("On all 6 styles: held-out emoji") and "FD-emoji 3.20" in both
    assert "; On twitter, google: held-out emoji" in both and "FD-emoji 8.86" in both
    assert reference_note([hybrid]).startswith("Reference: held-out emoji") and "8.86" in reference_note([hybrid])


def test_a_tokenizer_may_be_scored_on_styles_it_never_learnt_a_generator_may_not():
    from mindmap.eval.run import eval_styles
    legacy = {"styles": ["twitter", "google"]}
    assert eval_styles(legacy, None, "m") == ["twitter", "google"]
    assert eval_styles(legacy, ["openmoji"], "tok", unseen=True) == ["openmoji"]
    with pytest.raises(ValueError, match="styles m was trained on .*got openmoji"):
        eval_styles(legacy, ["openmoji"], "m")
    with pytest.raises(ValueError, match="subset of the emoji styles .*got blobmoji"):
        eval_styles(legacy, ["blobmoji"], "tok", unseen=True)
    with pytest.raises(ValueError, match="got none"):
        eval_styles(legacy, [], "tok", unseen=True)
