"""Next-scale prediction (VAR): multi-scale residual tokenizer and block-causal generator, tiny random models."""
import pytest
import torch

from mindmap.generators.scale import block_causal, scale_slices
from mindmap.tokenizers.msvq import default_scales

from conftest import tiny_msvq_tokenizer, tiny_scale

SCALES = (1, 2, 3, 4, 5, 6, 8)
L = sum(s * s for s in SCALES)      # 155 codes per image


def test_default_scales_follow_var():
    assert default_scales(8) == SCALES and default_scales(16) == (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
    assert default_scales(4) == (1, 2, 3, 4)


def test_scale_token_counts_and_decoding_the_running_sum():
    tok = tiny_msvq_tokenizer()
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    codes = tok.encode(x)
    assert [tuple(c.shape) for c in codes] == [(2, s, s) for s in SCALES] and tok.tokens == L
    f = sum(tok.quantizer.scale_update(c, k, 8) for k, c in enumerate(codes[:3]))
    assert torch.allclose(tok.decode(codes[:3]), tok.decode_vectors(f), atol=1e-6)     # the preview after 3 scales
    assert tok.teacher_inputs(codes).shape == (2, L - 1, 4)
    with pytest.raises(ValueError, match="scale 2"):
        tok.decode([codes[0], codes[2]])


def test_block_causal_mask():
    mask = block_causal(SCALES)
    sl = scale_slices(SCALES)
    assert mask.shape == (L, L) and sl[1] == slice(1, 5) and sl[-1] == slice(L - 64, L)
    assert bool(mask[sl[2]][:, :sl[2].stop].all())                 # a scale sees itself and all coarser scales
    assert not bool(mask[sl[2]][:, sl[2].stop:].any())             # and nothing finer
    assert bool(mask[0, 0]) and not bool(mask[0, 1:].any())


def test_cached_equals_uncached_logits():
    model = tiny_scale()
    inputs = torch.randn(2, L - 1, 4, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([1, model.null_class])
    with torch.no_grad():
        full = model(inputs, labels)
        model.setup_cache(2)
        steps = []
        for k, sl in enumerate(model.slices):
            x = model.embed(labels, None if k == 0 else inputs[:, sl.start - 1:sl.stop - 1], sl.start)
            steps.append(model.logits(x, labels, torch.arange(sl.start, sl.stop)))
        model.clear_caches()
    assert full.shape == (2, L, 32) and torch.allclose(torch.cat(steps, 1), full, atol=1e-5)
    other = inputs.clone()
    other[:, 20:] += 1.0                                           # finer scales do not reach coarser logits
    with torch.no_grad():
        assert torch.allclose(model(other, labels)[:, :14], full[:, :14], atol=1e-6)


def test_sampling_one_call_per_scale_and_cached_equals_naive(pipes):
    scale_pipe = pipes("tiny-scale")
    frames = list(scale_pipe.stream(seed=3, cfg=2.0, batch=2))
    assert [f.step for f in frames] == list(range(1, 8)) and frames[-1].network_calls == 7
    assert [tuple(c.shape) for c in frames[-1].views["pyramid"]] == [(2, s, s) for s in SCALES]
    assert len(frames[2].views["scale_images"]) == 3 and not bool(frames[0].mask.any())
    naive = scale_pipe(seed=3, cfg=2.0, batch=2, cached=False)
    assert all(torch.equal(a, b) for a, b in zip(frames[-1].views["pyramid"], naive.views["pyramid"]))
    assert torch.allclose(frames[-1].image, naive.image, atol=1e-5)


def test_seeds_and_bad_controls(pipes):
    scale_pipe = pipes("tiny-scale")
    a, b, c = scale_pipe(seed=1), scale_pipe(seed=1), scale_pipe(seed=2)
    assert torch.equal(a.image, b.image) and not torch.equal(a.image, c.image)
    for values, name in (({"cfg_schedule": "cubic"}, "cfg_schedule"), ({"cfg": 0}, "cfg"), ({"steps": 4}, "steps")):
        with pytest.raises(ValueError, match=name):
            scale_pipe(**values)


def test_a_run_without_previews_decodes_only_its_picture(pipes, monkeypatch):
    """The picture after each scale is decoded when the pyramid view reads it, once, not on every run."""
    scale_pipe = pipes("tiny-scale")
    calls = []
    decode = type(scale_pipe.tokenizer).decode_vectors
    monkeypatch.setattr(type(scale_pipe.tokenizer), "decode_vectors", lambda tok, v: calls.append(1) or decode(tok, v))
    frame = scale_pipe(seed=3)
    assert len(calls) == 1
    images = frame.views["scale_images"]
    first = images[0]
    assert len(images) == 7 and len(calls) == 2 and images[0] is first and len(calls) == 2   # decoded once, kept
    assert torch.equal(images[-1], frame.image)
    assert torch.allclose(images[2], scale_pipe.tokenizer.decode(frame.views["pyramid"][:3]), atol=1e-5)
