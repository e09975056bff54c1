"""The embedded checkpoints: they load, reconstruct held-out emoji above a measured floor, generate via the CLI."""
import json

import pytest
import torch

from mindmap.checkpoint import default_root, load_component, read_manifest
from mindmap.data import build_emoji, load_emoji
from mindmap.eval.metrics import tokenizer_metrics
from mindmap.tokenizers.vq import VQTokenizer

from test_cli import cli

VQ = default_root() / "vq-emoji32"
RASTER = default_root() / "raster-emoji32"
# Floors set just under what was measured when the checkpoints were trained (see their model cards).
PSNR_FLOOR_DB = 22.0
USAGE_FLOOR = 0.80


@pytest.fixture(scope="module")
def heldout():
    build_emoji()  # a no-op when `python -m mindmap data emoji` already ran
    data = load_emoji(32)
    return data, data.tensor(data.indices("heldout"))


def test_tokenizer_heldout_psnr_and_codebook_usage(heldout):
    data, images = heldout
    assert read_manifest(VQ)["classes"] == data.classes          # labels never shift
    tok = load_component(VQ, "tokenizer", VQTokenizer)
    m = tokenizer_metrics(tok, images)
    assert m["images"] == len(images) > 500
    assert m["psnr"] > PSNR_FLOOR_DB
    assert m["codebook_usage"] >= USAGE_FLOOR


def test_raster_carries_the_same_tokenizer():
    a = load_component(VQ, "tokenizer", VQTokenizer).state_dict()
    b = load_component(RASTER, "tokenizer", VQTokenizer).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_models_lists_the_shipped_raster_model():
    models = {m["name"]: m for m in json.loads(cli("models", "--json").stdout)}
    raster = models["raster-emoji32"]
    assert raster["paradigm"] == "raster" and len(raster["controls"]["class"]["choices"]) == 99


def test_generate_on_the_shipped_model(tmp_path):
    base = ["generate", "--model", "raster-emoji32", "--class", "face-smiling", "--seed", 0]
    out = json.loads(cli(*base, "--out", tmp_path / "a.png", "--scale", 2).stdout)
    cli(*base, "--out", tmp_path / "b.png", "--scale", 2)
    assert out["network_calls"] == 64
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    from PIL import Image
    assert Image.open(tmp_path / "a.png").size == (64, 64)


CLASSIFIER = default_root() / "classifier-emoji32"
EVAL_KEYS = {"fd_emoji", "fd_emoji_floor", "class_top1", "class_top5", "precision", "recall", "memorized",
             "seconds_per_image", "network_calls"}


def test_class_consistency_of_real_heldout_is_the_classifier_accuracy(heldout):
    from mindmap.eval.classifier import EmojiClassifier, embed, topk_agreement
    data, images = heldout
    clf = load_component(CLASSIFIER, "classifier", EmojiClassifier)
    labels = torch.from_numpy(data.labels[data.indices("heldout")])
    agree = topk_agreement(embed(clf, images)[1], labels)
    card = read_manifest(CLASSIFIER)["metrics"]
    assert agree["top1"] == pytest.approx(card["heldout_top1"], abs=1e-6)
    assert agree["top5"] == pytest.approx(card["heldout_top5"], abs=1e-6)
    assert agree["top1"] > 10 / 99                                    # far above chance


def test_eval_cli_on_the_shipped_models():
    row = json.loads(cli("eval", "--model", "raster-emoji32", "--n", 99, "--json").stdout)
    assert EVAL_KEYS <= set(row) and row["n"] == 99 and row["network_calls"] == 64
    assert row["fd_emoji"] > row["fd_emoji_floor"] > 0
    assert row["class_top1"] > 10 / 99 and 0 <= row["memorized"] <= 1
    tok = json.loads(cli("eval", "--tokenizer", "vq-emoji32").stdout)
    assert tok["psnr"] == pytest.approx(read_manifest(VQ)["metrics"]["psnr"], abs=1e-3)
    assert 0 < tok["ssim"] <= 1 and tok["rfd_emoji"] > 0
