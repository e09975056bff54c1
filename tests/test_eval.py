"""Metrics on synthetic sets with known answers."""
import torch

from mindmap.eval.classifier import EmojiClassifier, augment
from mindmap.eval.metrics import codebook_stats, frechet_distance, nearest_distances, precision_recall, psnr, ssim


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
    assert len(lines) == 3 and lines[2].startswith("| mq-x | 0.5 | 19.87 | 32 | 32 | 0.059 | 49.26 (34.29) | 0.16 / 0.36 |")
