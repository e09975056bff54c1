"""The style condition: every class generator takes an art style beside the class (packed into one label), the
pipeline, CLI, race and eval carry it, training drops it to 'any style', and the emoji data keeps its split by
emoji across every style."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mindmap.controls import ANY_STYLE
from mindmap.data import STYLES, build_emoji, load_emoji
from mindmap.nn import LabelEmbedding, pack_labels
from mindmap.pipeline import Pipeline
from mindmap.race import race
from mindmap.train.generator import ClassConditions

from conftest import (tiny_depth, tiny_kl_tokenizer, tiny_mar, tiny_masked, tiny_mq_tokenizer,
                      tiny_msvq_tokenizer, tiny_raster, tiny_rq_tokenizer, tiny_scale, tiny_stack, tiny_tokenizer,
                      write_tiny_pair)
from test_cli import run

STYLED = ["twitter", "openmoji", "fluent-flat"]
MAKERS = {"raster": (tiny_tokenizer, tiny_raster), "masked": (tiny_tokenizer, tiny_masked),
          "depth": (tiny_rq_tokenizer, tiny_depth), "mq": (tiny_mq_tokenizer, tiny_stack),
          "scale": (tiny_msvq_tokenizer, tiny_scale), "mar": (tiny_kl_tokenizer, tiny_mar)}


@pytest.fixture(scope="module")
def style_root(tmp_path_factory):
    """One tiny class generator of every trainable paradigm with a style condition over three styles; the style
    table drawn at random (a trained one is far from its zero start)."""
    root = tmp_path_factory.mktemp("styled")
    for paradigm, (make_tok, make_gen) in MAKERS.items():
        gen = make_gen(num_styles=len(STYLED))
        torch.manual_seed(1)
        torch.nn.init.normal_(gen.cls_emb.styles.weight, std=1.0)
        for name, w in gen.named_parameters():     # MAR's head starts adaLN-zero: blind to its condition
            if name.startswith("head.") and w.ndim == 2 and not w.any():
                torch.nn.init.normal_(w, std=0.1)
        write_tiny_pair(root / f"styled-{paradigm}", paradigm, make_tok(), gen, styles=STYLED)
    return root


def test_a_label_packs_class_and_style_and_embeds_as_their_sum():
    emb = LabelEmbedding(num_classes=3, num_styles=2, dim=8)
    torch.nn.init.normal_(emb.styles.weight)
    classes, styles = torch.tensor([0, 2, 3, 1]), torch.tensor([-1, 0, 1, 1])   # 3: the null class; -1: any style
    labels = pack_labels(classes, styles, 3)
    assert labels.tolist() == [0, 2 + 4, 3 + 8, 1 + 8]
    want = emb.weight[classes] + emb.styles.weight[styles + 1]
    assert torch.equal(emb(labels), want)
    plain = LabelEmbedding(num_classes=3, num_styles=0, dim=8)      # a class-only model: exactly an nn.Embedding
    assert plain.styles is None and torch.equal(plain(classes), plain.weight[classes])
    with pytest.raises(IndexError):
        plain(torch.tensor([4]))                                    # no style slots to fall into


@pytest.mark.parametrize("paradigm", list(MAKERS))
def test_every_class_generator_draws_the_style_it_is_asked_for(style_root, paradigm):
    pipe = Pipeline.from_pretrained(style_root / f"styled-{paradigm}", device="cpu")
    spec = next(s for s in pipe.specs if s.name == "style")
    assert spec.choices == (ANY_STYLE, *STYLED) and spec.default == ANY_STYLE
    def drawn(style):   # the picture and the probability of every code drawn (a tiny model's codes may coincide)
        frame = pipe(**{"class": "food-fruit"}, style=style, seed=5)
        return torch.cat([frame.image.flatten(), frame.confidence.nan_to_num(-1).flatten()])
    drawings = {s: drawn(s) for s in (ANY_STYLE, *STYLED)}
    assert torch.equal(drawings["openmoji"], drawn("openmoji"))      # seeded: the same style, the same picture
    assert all(not torch.equal(drawings[a], drawings[b]) for a in drawings for b in drawings if a < b)
    cond = pipe.condition(pipe.controls(**{"class": "food-fruit"}, style="fluent-flat", batch=2))
    assert cond.tolist() == [2 + 4 * 3] * 2                        # class 2 of 3, style 2 of 3: 2 + (3 + 1) * (2 + 1)
    assert pipe.condition(pipe.controls(**{"class": "food-fruit"})).tolist() == [2]    # 'any': the class alone


def test_a_bad_style_is_refused_by_name(style_root, pipes):
    pipe = Pipeline.from_pretrained(style_root / "styled-raster", device="cpu")
    with pytest.raises(ValueError, match=r"style must be one of 4 choices \(any, twitter, openmoji, fluent-flat\)"):
        pipe(**{"class": "food-fruit"}, style="comic-sans")
    with pytest.raises(ValueError, match="unknown control 'style' for this model"):
        pipes("tiny-raster")(**{"class": "food-fruit"}, style="twitter")


def test_a_manifest_whose_styles_disagree_with_the_generator_is_refused(style_root, tmp_path):
    import shutil
    from mindmap.checkpoint import CheckpointError
    folder = tmp_path / "bad"
    shutil.copytree(style_root / "styled-masked", folder)
    manifest = json.loads((folder / "mindmap.json").read_text())
    (folder / "mindmap.json").write_text(json.dumps({**manifest, "styles": STYLED[:2]}))
    with pytest.raises(CheckpointError, match="generator takes 3 styles, the manifest lists 2"):
        Pipeline.from_pretrained(folder, device="cpu")


def test_training_drops_the_style_with_the_class_and_alone():
    class Model:
        null_class = 3
        config = type("C", (), {"class_dropout": 0.25})()
    n = 20000
    labels, styles = torch.randint(0, 3, (n,)), torch.randint(0, 2, (n,))
    conds = ClassConditions(labels, Model(), styles)
    out = conds.train(torch.arange(n), torch.Generator().manual_seed(0))
    klass, slot = out % 4, out // 4
    null = klass == 3
    assert abs(null.float().mean().item() - 0.25) < 0.015
    assert (slot[null] == 0).all()                                  # CFG's unconditional half: any class, any style
    kept = ~null
    assert torch.equal(klass[kept], labels[kept])
    any_style = slot[kept] == 0
    assert abs(any_style.float().mean().item() - 0.25) < 0.015      # the rest: 'any style' at the same rate
    assert torch.equal(slot[kept][~any_style] - 1, styles[kept][~any_style])
    assert torch.equal(conds.eval(torch.arange(5)), pack_labels(labels[:5], styles[:5], 3))


def test_the_race_gives_the_style_to_the_models_that_take_it(style_root, tiny_root):
    pipes = {"styled": Pipeline.from_pretrained(style_root / "styled-raster", device="cpu"),
             "plain": Pipeline.from_pretrained(tiny_root / "tiny-raster", device="cpu")}
    last = {lap.model: lap.frame for lap in race(pipes, "food-fruit", 3, style="openmoji")}
    solo = pipes["styled"](**{"class": "food-fruit"}, style="openmoji", seed=3)
    assert torch.equal(last["styled"].image, solo.image)
    assert torch.equal(last["plain"].image, pipes["plain"](**{"class": "food-fruit"}, seed=3).image)
    with pytest.raises(ValueError, match="style must be one of fluent-flat, openmoji, twitter; got 'google'"):
        next(race(pipes, "food-fruit", 3, style="google"))


def test_generate_cli_takes_a_style(style_root, tmp_path, capsys):
    rc, out, err = run(capsys, "generate", "--model", "styled-scale", "--root", style_root, "--class", "food-fruit",
                       "--style", "twitter", "--seed", "2", "--out", tmp_path / "a.png")
    assert rc == 0, err
    assert json.loads(out)["style"] == "twitter"
    rc, out, err = run(capsys, "generate", "--model", "styled-scale", "--root", style_root, "--class", "food-fruit",
                       "--style", "nope", "--out", tmp_path / "b.png")
    assert rc == 2 and "style must be one of" in err and not (tmp_path / "b.png").exists()


def test_every_style_keeps_each_emoji_on_one_side_of_the_split():
    build_emoji()                                    # a no-op when `python -m mindmap data emoji` already ran
    data = load_emoji(32)
    assert data.styles == list(STYLES) and len(STYLES) >= 5
    side: dict[str, set] = {}
    for r in data.records:
        side.setdefault(r["emoji"], set()).add(r["split"])
    assert all(len(s) == 1 for s in side.values())
    counts = {s: sum(r["style"] == s for r in data.records) for s in STYLES}
    assert min(counts.values()) > 1000, counts
    two = load_emoji(32, styles=["google", "openmoji"])              # a subset, in the order asked for
    assert two.styles == ["google", "openmoji"] and set(two.style_ids.tolist()) == {0, 1}
    keep = [i for i, r in enumerate(data.records) if r["style"] in ("google", "openmoji")]
    assert np.array_equal(two.images, data.images[keep])
    with pytest.raises(ValueError, match="styles must be a non-empty list of twitter, google"):
        load_emoji(32, styles=["apple"])


def test_the_classifiers_style_head_names_held_out_styles():
    from mindmap.eval.run import load_classifier, style_agreement
    clf = load_classifier()
    data = load_emoji(32)
    held = data.indices("heldout")
    agree = style_agreement(clf, data.tensor(held), torch.from_numpy(data.style_ids[held]), data.styles)
    assert agree["style_top1"] > 0.8 and agree["style_top1_chance"] == pytest.approx(1 / len(STYLES))
    wrong = style_agreement(clf, data.tensor(held), torch.from_numpy((data.style_ids[held] + 1) % len(STYLES)),
                            data.styles)
    assert wrong["style_top1"] < 0.1                                 # asked for another style: the head says no
