"""The embedded checkpoints: each loads, tokenizers reconstruct held-out emoji above a measured floor,
every generator samples deterministically, the raster model through the CLI."""
import json

import pytest
import torch

from mindmap.checkpoint import default_root, load_component, read_manifest
from mindmap.data import STYLES, build_emoji, load_emoji, model_styles
from mindmap.data.emoji import LEGACY_STYLES
from mindmap.eval.metrics import codebook_stats, tokenizer_codes, tokenizer_metrics
from mindmap.registry import list_models, list_tokenizers, load_pipeline, load_tokenizer

from test_cli import cli, run

ROOT = default_root()
# Held-out PSNR (dB) at the finest level, set just under what `eval --tokenizer all` measured (README).
# Measured on the test's subset (every third held-out image): vq 23.12, vq-arena 23.08, rq 27.27, rq-arena 27.48,
# mq 20.65, mq-arena 20.93, msvq 23.50, msvq-arena 24.74, kl 24.30, kl-arena 27.71 dB.
PSNR_FLOORS = {"vq-emoji32": 22.5, "vq-arena-emoji32": 22.5, "rq-emoji32": 26.5, "rq-arena-emoji32": 27.0,
               "mq-emoji32": 20.0, "mq-arena-emoji32": 20.5,
               "msvq-emoji32": 23.0, "msvq-arena-emoji32": 24.0, "kl-emoji32": 24.0, "kl-arena-emoji32": 27.0}
USAGE_FLOOR = 0.80
GENERATORS = [m.name for m in list_models()]
# The suite's jobs at the arena budget that have run on this CPU (the hybrid composed of two of them).
ARENA = ["raster-arena-emoji32", "masked-arena-emoji32", "hybrid-arena-emoji32", "dnd-arena-emoji32",
         "mq-stack-arena-emoji32", "var-arena-emoji32", "mar-arena-emoji32"]
# The style agreement their samples must beat; chance is 1/6. `eval` measured on 1089 samples (README), at each
# model's defaults: raster 0.81, masked 0.76, hybrid 0.75, DnD 0.80, MQ-Stack 0.65 (mask ratio 0.5; its tokenizer's
# ceiling 0.76), VAR 0.75, MAR 0.66; on the test's 48: 0.77, 0.71, 0.77, 0.81, 0.69, 0.69, 0.71.
STYLE_FLOOR = 0.6


@pytest.fixture(scope="module")
def heldout():
    """(data, held-out images) of the styles a checkpoint was trained on (its manifest's), by checkpoint name."""
    build_emoji()  # a no-op when `python -m mindmap data emoji` already ran
    cache = {}

    def of(name: str):
        styles = tuple(model_styles(read_manifest(ROOT / name)))
        if styles not in cache:
            data = load_emoji(32, styles=styles)
            cache[styles] = data, data.tensor(data.indices("heldout"))
        return cache[styles]
    return of


def test_every_tokenizer_has_a_floor():
    assert set(list_tokenizers()) == set(PSNR_FLOORS)


@pytest.mark.parametrize("name", sorted(PSNR_FLOORS))
def test_tokenizer_heldout_psnr_and_codebook_usage(heldout, name):
    """PSNR on every third held-out image (641 of the six styles' 1,923, 244 of Twemoji and Noto's 732), against
    a floor a little under each model's figure on that subset; codebook usage on all of them."""
    data, images = heldout(name)
    assert read_manifest(ROOT / name)["classes"] == data.classes          # labels never shift
    tokenizer = load_tokenizer(name)
    m = tokenizer_metrics(tokenizer, images[::3])
    assert m["images"] == len(images[::3]) > 200 and m["psnr"] > PSNR_FLOORS[name]
    # the eval's finest reconstruction (one decode) is the last preview row, bit for bit
    assert torch.equal(tokenizer.finest(images[:32]), tokenizer.previews(images[:32])[-1][1])
    if hasattr(tokenizer, "vocab_size"):
        usage = codebook_stats(tokenizer_codes(tokenizer, images), tokenizer.vocab_size)["codebook_usage"]
        assert usage >= USAGE_FLOOR


@pytest.mark.parametrize("name, source", [("raster-emoji32", "vq-emoji32"), ("masked-emoji32", "vq-emoji32"),
                                          ("raster-arena-emoji32", "vq-arena-emoji32"),
                                          ("masked-arena-emoji32", "vq-arena-emoji32"),
                                          ("dnd-arena-emoji32", "rq-arena-emoji32"),
                                          ("mq-stack-arena-emoji32", "mq-arena-emoji32"),
                                          ("var-arena-emoji32", "msvq-arena-emoji32"),
                                          ("mar-arena-emoji32", "kl-arena-emoji32")])
def test_a_generator_carries_the_tokenizer_it_names(name, source):
    tokenizer = load_tokenizer(source)                      # the class comes from the source's manifest
    a = tokenizer.state_dict()
    b = load_component(ROOT / name, "tokenizer", type(tokenizer)).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert read_manifest(ROOT / name)["tokenizer_source"] == source


@pytest.mark.parametrize("name", ARENA)
def test_an_arena_model_draws_the_style_it_is_asked_for(name):
    """The arena models learnt all six styles with a style condition, on a tokenizer that learnt them too: asked
    for each style in turn, their samples are named that style by the eval classifier's style head far above chance."""
    from mindmap.eval.run import load_classifier, sample_classes, style_agreement
    pipe = load_pipeline(name)
    assert pipe.styles == list(STYLES)
    images, _, _, _, style_ids = sample_classes(pipe, 48, seed=0, controls={})
    assert style_ids.bincount().tolist() == [8] * 6                          # every style asked for equally
    agree = style_agreement(load_classifier(), images, style_ids, pipe.styles)
    assert agree["style_top1"] > STYLE_FLOOR and agree["style_top1_chance"] == pytest.approx(1 / 6)
    a = pipe(**{"class": "face-smiling"}, style="twitter", seed=3).image
    b = pipe(**{"class": "face-smiling"}, style="openmoji", seed=3).image
    assert not torch.equal(a, b)                                             # the style changes the picture
    with pytest.raises(ValueError, match="style"):
        pipe(**{"class": "face-smiling"}, style="blobmoji", seed=3)


def test_a_tokenizer_that_never_saw_a_style_caps_the_style_agreement():
    """vq-emoji32 learnt Twemoji and Noto only: its reconstructions keep Twemoji's style but lose OpenMoji's, which
    the style head names in the real images and in those of vq-arena-emoji32, which learnt all six. `eval` reports
    this as the generator's ceiling (README)."""
    from mindmap.eval.run import load_classifier, style_agreement, style_ceiling
    clf, tok = load_classifier(), load_tokenizer("vq-emoji32")
    seen, unseen = (load_emoji(32, styles=[s]) for s in ("twitter", "openmoji"))
    held = {s: d.tensor(d.indices("heldout")) for s, d in (("twitter", seen), ("openmoji", unseen))}
    assert style_ceiling(clf, tok, seen, held["twitter"])["style_top1_ceiling"] > 0.85
    assert style_ceiling(clf, tok, unseen, held["openmoji"])["style_top1_ceiling"] < 0.3
    arena = load_tokenizer("vq-arena-emoji32")                                # learnt all six: keeps OpenMoji's
    assert style_ceiling(clf, arena, unseen, held["openmoji"])["style_top1_ceiling"] > 0.85
    real = style_agreement(clf, held["openmoji"], torch.zeros(len(held["openmoji"]), dtype=torch.long), ["openmoji"])
    assert real["style_top1"] > 0.9


@pytest.mark.parametrize("name", GENERATORS)
def test_every_shipped_generator_samples_deterministically(name):
    pipe = load_pipeline(name)
    a, b = pipe(seed=5), pipe(seed=5)
    assert torch.equal(a.image, b.image) and a.image.shape == (1, 3, 32, 32) and a.done
    assert a.network_calls >= 1 and float(a.image.std()) > 0.05                        # a picture, not a blank


def test_models_lists_every_paradigm():
    models = {m["name"]: m for m in json.loads(cli("models", "--json").stdout)}
    paradigms = {m["paradigm"] for m in models.values()}
    assert paradigms == {"raster", "masked", "hybrid", "depth", "mq", "scale", "mar"}
    assert len(models["raster-emoji32"]["controls"]["class"]["choices"]) == 99
    assert any(m["conditioning"] == "text" for m in models.values())


def test_generate_on_the_shipped_model(tmp_path):
    base = ["generate", "--model", "raster-emoji32", "--class", "face-smiling", "--seed", 0]
    out = json.loads(cli(*base, "--out", tmp_path / "a.png", "--scale", 2).stdout)
    cli(*base, "--out", tmp_path / "b.png", "--scale", 2)
    cli("generate", "--model", "raster-emoji32", "--class", "face-smiling", "--seed", 1, "--out", tmp_path / "c.png")
    assert out["network_calls"] == 64
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    from PIL import Image
    assert Image.open(tmp_path / "a.png").size == (64, 64)
    assert Image.open(tmp_path / "c.png").tobytes() != Image.open(tmp_path / "a.png").resize((32, 32)).tobytes()


CLASSIFIER = ROOT / "classifier-emoji32"
EVAL_KEYS = {"fd_emoji", "fd_emoji_interval", "kid", "kid_std", "fd_emoji_train", "fd_emoji_real", "class_top1",
             "class_top5", "precision", "recall", "memorized", "seconds_per_image", "network_calls"}


def test_class_consistency_of_real_heldout_is_the_classifier_accuracy():
    from mindmap.eval.classifier import EmojiClassifier, embed, topk_agreement
    data = load_emoji(32, styles=LEGACY_STYLES)           # the class head's training styles (its card's figures)
    images = data.tensor(data.indices("heldout"))
    clf = load_component(CLASSIFIER, "classifier", EmojiClassifier)
    labels = torch.from_numpy(data.labels[data.indices("heldout")])
    agree = topk_agreement(embed(clf, images)[1], labels)
    card = read_manifest(CLASSIFIER)["metrics"]
    assert agree["top1"] == pytest.approx(card["heldout_top1"], abs=1e-6)
    assert agree["top5"] == pytest.approx(card["heldout_top5"], abs=1e-6)
    assert agree["top1"] > 10 / 99                                    # far above chance


def test_eval_cli_on_the_shipped_models(capsys):
    def cli_json(*args):                              # in this process: a subprocess pays ~15 s of imports here
        rc, out, _ = run(capsys, *args)
        assert rc == 0
        return json.loads(out)
    row = cli_json("eval", "--model", "masked-emoji32", "--n", 40, "--json")
    assert EVAL_KEYS <= set(row) and row["n"] == 40 and row["network_calls"] == 8
    assert row["samples_seen"] == [144000]                        # 2,250 steps x 64 (its card's command)
    assert row["fd_emoji"] > row["fd_emoji_train"] > 0 and row["kid"] > row["kid_real"]
    low, high = row["fd_emoji_interval"]
    assert low < row["fd_emoji"] < high and row["kid_std"] > 0
    assert row["class_top1"] > 10 / 99 and 0 <= row["memorized"] <= 1
    card = read_manifest(ROOT / "masked-emoji32")["metrics"]["heldout_ce"]   # its card's, measured when trained
    assert row["heldout_loss"] == pytest.approx(card, abs=1e-3) and row["heldout_loss_metric"] == "CE (nats/code)"
    tok = cli_json("eval", "--tokenizer", "vq-emoji32")
    assert tok["psnr"] == pytest.approx(read_manifest(ROOT / "vq-emoji32")["metrics"]["psnr"], abs=1e-3)
    assert 0 < tok["ssim"] <= 1 and tok["rfd_emoji"] > 0 and 0.5 < tok["style_top1_ceiling"] <= 1


def test_a_partial_eval_all_writes_the_readme_and_leaves_the_cards(tmp_path, capsys):
    """`eval --all PATTERN --defaults-only --styles ... --write`: the matching models in one table, scored on the
    same held-out emoji, each row with its training budget; the cards keep their full evaluations."""
    import shutil
    for name in ("classifier-emoji32", "var-arena-emoji32"):
        shutil.copytree(ROOT / name, tmp_path / name)
    card = (tmp_path / "var-arena-emoji32" / "README.md").read_text()
    readme = tmp_path / "README.md"
    readme.write_text("# r\n<!-- RESULTS -->\nold\n<!-- /RESULTS -->\n<!-- MQ -->\nkept\n<!-- /MQ -->\n")
    rc, _, err = run(capsys, "eval", "--all", "var-*", "--defaults-only", "--styles", "twitter,google", "--n", 20,
                     "--root", tmp_path, "--write", readme)
    assert rc == 0, err
    text = readme.read_text()
    assert "scored against the held-out emoji of twitter, google" in text and "\nold\n" not in text
    assert [line.split(" | ")[3] for line in text.splitlines() if line.startswith("| var")] == ["320k"]
    assert "\nkept\n" in text and (tmp_path / "assets" / "quality_speed.png").stat().st_size > 0
    assert (tmp_path / "var-arena-emoji32" / "README.md").read_text() == card
    rc, _, err = run(capsys, "eval", "--all", "raster-*", "--root", tmp_path)
    assert rc == 2 and "--all raster-*: no generator's name matches" in err
