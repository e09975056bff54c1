"""Text prompts: the offline MiniLM encoder, a tiny text-conditioned raster model, captions, the CLI."""
import json

import pytest
import torch

from mindmap.generators.base import TextCondition
from mindmap.text import MAX_PROMPT_CHARS, check_prompt, text_encoder
from mindmap.train.captions import emoji_captions

from test_cli import cli

N = 64  # the tiny models' 8x8 grid


def test_prompts_are_trimmed_and_checked():
    assert check_prompt("  red   apple \t\n") == "red apple"
    assert check_prompt("🍎 漢字 ☃") == "🍎 漢字 ☃"
    # NFKC (full-width letters, the ideographic space), and control and format characters dropped
    assert check_prompt("ｒｅｄ\u3000ap\u200bple\u202e\x07") == "red apple"
    for bad, needle in (("", "empty"), ("   ", "empty"), ("\u200b\u200d\x00\u2066", "empty"),
                        ("x" * (MAX_PROMPT_CHARS + 1), "at most"), (None, "text")):
        with pytest.raises(ValueError, match=f"prompt must.*{needle}"):
            check_prompt(bad)


def test_encoder_gives_token_states_and_caches_them(monkeypatch):
    encoder = text_encoder(8)
    cond = encoder.encode(["red apple", "a much longer prompt about a grinning face with big eyes"])
    assert isinstance(cond, TextCondition) and cond.states.shape == (2, 8, 384)
    assert cond.mask[0].tolist() == [True] * 4 + [False] * 4                  # [CLS] red apple [SEP], padding
    assert bool(cond.mask[1].all())                                            # truncated to 8 tokens
    calls = []
    monkeypatch.setattr(encoder, "_encode_new", lambda prompts: calls.append(prompts))
    again = encoder.encode(["red  apple"])                                     # same after trimming: cached
    assert calls == [] and torch.equal(again.states[0], cond.states[0])


def test_captions_of_an_emoji():
    caps = emoji_captions({"name": "GRINNING FACE", "short_names": ["grinning", "grinning_face"]})
    assert caps == ["grinning face", "an emoji of grinning face", "grinning face emoji", "grinning"]


def test_text_model_same_prompt_same_image_and_prompt_matters(pipes):
    text_pipe = pipes("tiny-text")
    a = text_pipe(prompt="red apple", seed=3)
    b = text_pipe(prompt="  red apple", seed=3)
    c = text_pipe(prompt="sailboat", seed=3)
    assert torch.equal(a.image, b.image) and not torch.equal(a.tokens, c.tokens)
    naive = text_pipe(prompt="red apple", seed=3, cached=False)
    assert torch.equal(a.tokens, naive.tokens)                                 # padding masked the same both ways
    unguided = text_pipe(prompt="red apple", seed=3, cfg=1.0, batch=2)
    assert unguided.image.shape == (2, 3, 16, 16)


TEXT_PARALLEL = [("tiny-text-masked", {}), ("tiny-text-hybrid", {"prefix": 16})]


@pytest.mark.parametrize("name, extra", TEXT_PARALLEL, ids=["masked", "hybrid"])
def test_text_masked_and_hybrid_follow_the_prompt_and_commit_every_cell(name, extra, pipes):
    pipe = pipes(name)
    common = dict(seed=3, steps=6, **extra)
    a, b = pipe(prompt="red apple", **common), pipe(prompt="red apple", **common)
    c = pipe(prompt="sailboat", **common)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.image, b.image)
    assert not torch.equal(a.tokens, c.tokens)
    assert a.network_calls == a.total == extra.get("prefix", 0) + 6               # the masked part: `steps` calls
    assert bool((a.tokens >= 0).all()) and not bool(a.mask.any())
    guided = pipe(prompt="red apple", cfg=8.0, batch=2, **common)
    assert guided.tokens.shape == (2, 8, 8) and guided.image.shape == (2, 3, 16, 16)
    assert not torch.equal(guided.tokens, pipe(prompt="red apple", cfg=1.0, batch=2, **common).tokens)


def test_text_hybrid_extremes_are_the_text_masked_and_raster_models(pipes):
    hybrid_pipe, masked_pipe, raster_pipe = pipes("tiny-text-hybrid"), pipes("tiny-text-masked"), pipes("tiny-text")
    common = dict(prompt="red apple", seed=9, cfg=2.0, temperature=1.2)
    assert torch.equal(hybrid_pipe(prefix=0, steps=7, **common).tokens, masked_pipe(steps=7, **common).tokens)
    pure = hybrid_pipe(prefix=N, steps=7, **common)
    assert pure.network_calls == N and torch.equal(pure.tokens, raster_pipe(**common).tokens)


@pytest.mark.parametrize("name", [name for name, _ in TEXT_PARALLEL])
def test_a_class_control_on_a_text_masked_or_hybrid_model_is_an_error(name, pipes):
    with pytest.raises(ValueError, match="unknown control 'class'"):
        pipes(name)(prompt="red apple", **{"class": "food-fruit"})


@pytest.mark.parametrize("values, needle", [({"prompt": ""}, "prompt must not be empty"),
                                            ({"prompt": "y" * 500}, "prompt must be at most"),
                                            ({"class": "food-fruit"}, "unknown control 'class'")])
def test_bad_prompts_are_clear_errors(values, needle, pipes):
    text_pipe = pipes("tiny-text")
    with pytest.raises(ValueError, match=needle):
        text_pipe(**values)


def test_generate_with_a_prompt_on_the_cli(tiny_root, tmp_path):
    base = ["generate", "--model", "tiny-text", "--root", tiny_root, "--seed", 2]
    out = json.loads(cli(*base, "--prompt", "red apple", "--out", tmp_path / "a.png").stdout)
    assert out["prompt"] == "red apple" and out["network_calls"] == 64
    proc = cli(*base, "--prompt", "   ", "--out", tmp_path / "b.png", check=False)
    assert proc.returncode != 0 and "prompt must not be empty" in proc.stderr and not (tmp_path / "b.png").exists()


def test_warm_start_copies_the_class_models_blocks_into_a_text_model(tiny_root):
    from mindmap.checkpoint import load_component
    from mindmap.generators.raster import RasterGPT
    from mindmap.train.generator import warm_start

    source = load_component(tiny_root / "tiny-raster", "generator", RasterGPT)
    torch.manual_seed(1)
    model = RasterGPT(**{**dict(source.config), "conditioning": "text"})
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    line = warm_start(model, tiny_root / "tiny-raster", RasterGPT, "raster")
    src, now = source.state_dict(), model.state_dict()
    copied = [k for k in now if k in src and src[k].shape == now[k].shape]
    assert copied and all(torch.equal(now[k], src[k].float()) for k in copied)
    untouched = [k for k in now if k not in copied]
    assert untouched and all(torch.equal(now[k], fresh[k]) for k in untouched)   # the prompt side starts fresh
    assert "tiny-raster" in line and f"{len(copied)}/{len(now)}" in line


def test_warm_start_refuses_another_paradigms_checkpoint(tiny_root):
    from mindmap.generators.scale import ScaleGPT
    from mindmap.train.generator import warm_start
    from conftest import tiny_raster

    with pytest.raises(ValueError, match="a scale checkpoint cannot start a raster generator"):
        warm_start(tiny_raster(), tiny_root / "tiny-scale", ScaleGPT, "raster")
