import pytest
import torch

from mindmap.nn import apply_rope, attend, rope_2d
from mindmap.sampling import cfg_mix, filter_logits, make_generator, sample

from conftest import tiny_raster


def test_rope_prefix_is_identity_and_rows_cols_split():
    rope = rope_2d(grid=4, head_dim=16, n_prefix=1)
    assert rope.shape == (1 + 16, 8, 2)
    cos, sin = rope.unbind(-1)
    assert torch.all(cos[0] == 1) and torch.all(sin[0] == 0)
    # cell (r=1, c=0) turns only the row half; cell (0, 1) only the column half
    assert torch.all(sin[1 + 4, 4:] == 0) and torch.any(sin[1 + 4, :4] != 0)
    assert torch.all(sin[1 + 1, :4] == 0) and torch.any(sin[1 + 1, 4:] != 0)
    x = torch.randn(2, 3, 17, 16)
    assert torch.allclose(apply_rope(x, rope).norm(dim=-1), x.norm(dim=-1), atol=1e-5)  # a rotation
    assert torch.equal(apply_rope(x, rope)[:, :, 0], x[:, :, 0])
    with pytest.raises(ValueError, match="head_dim"):
        rope_2d(4, 6, 1)


def test_rope_zero_prefix_zeroes_the_prefix_queries_only():
    """LlamaGen's published models: the class token's rotary rows are zeros, image rows unchanged."""
    zero, ident = rope_2d(4, 16, n_prefix=1, prefix="zero"), rope_2d(4, 16, n_prefix=1)
    x = torch.randn(2, 3, 17, 16)
    assert torch.all(apply_rope(x, zero)[:, :, 0] == 0)
    assert torch.equal(apply_rope(x, zero)[:, :, 1:], apply_rope(x, ident)[:, :, 1:])
    with pytest.raises(ValueError, match="prefix rotation"):
        rope_2d(4, 16, 1, prefix="half")


def test_cached_equals_uncached_logits():
    model = tiny_raster()
    codes = torch.randint(0, 32, (3, 64), generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 2, model.null_class])
    with torch.no_grad():
        full = model(codes, labels)                       # (B, N, V)
        model.setup_cache(3)
        steps = [model.prefill(labels)]
        for i in range(1, 64):
            steps.append(model.decode_one_token(codes[:, i - 1], torch.tensor([i])))
        model.trunk.clear_caches()
        naive = model.logits_full(labels, codes[:, :10])
    assert full.shape == (3, 64, 32)
    assert torch.allclose(torch.stack(steps, 1), full, atol=1e-5)
    assert torch.allclose(naive, full[:, 10], atol=1e-5)


def test_causality_future_codes_do_not_change_past_logits():
    model = tiny_raster()
    a = torch.randint(0, 32, (1, 64), generator=torch.Generator().manual_seed(1))
    b = a.clone()
    b[0, 40:] = (b[0, 40:] + 1) % 32
    with torch.no_grad():
        la, lb = model(a, torch.tensor([1])), model(b, torch.tensor([1]))
    assert torch.allclose(la[:, :41], lb[:, :41], atol=1e-6)   # logits for cells 0..40 see codes < 40
    assert not torch.allclose(la[:, 41:], lb[:, 41:])


def test_cfg_mix_and_filters():
    c, u = torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([[1.0, 0.0, 0.0]])
    assert torch.allclose(cfg_mix(torch.cat([c, u]), 1.0), c)
    assert torch.allclose(cfg_mix(torch.cat([c, u]), 3.0), u + 3 * (c - u))
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0]])
    assert torch.isinf(filter_logits(logits, top_k=2)[0, 2:]).all() and torch.isfinite(filter_logits(logits, top_k=2)[0, :2]).all()
    p = logits.softmax(-1)[0]                                   # ~[.64, .24, .09, .03]
    kept = torch.isfinite(filter_logits(logits, top_p=0.7)[0])
    assert kept.tolist() == [True, True, False, False]
    assert torch.isfinite(filter_logits(logits, top_p=float(p[0]) - 1e-3)[0]).sum() == 1
    assert torch.allclose(filter_logits(logits, temperature=2.0), logits / 2)


def test_sample_is_seeded():
    logits = torch.randn(4, 50)
    a = sample(logits, make_generator(7, "cpu"))[0]
    b = sample(logits, make_generator(7, "cpu"))[0]
    draws = torch.stack([sample(logits, make_generator(s, "cpu"))[0] for s in range(20)])
    assert torch.equal(a, b)
    assert len({tuple(d.tolist()) for d in draws}) > 1


def test_attention_on_the_cpu_runs_bf16_in_float32_and_leaves_float32_untouched():
    """`attend`: bf16 inputs (training under autocast) are attended in float32 and cast back; float32 inputs (every
    shipped model at inference) get torch's own kernel, bit for bit."""
    import torch.nn.functional as F
    from mindmap.generators.scale import block_causal
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 14, 8, generator=g) for _ in range(3))
    mask = block_causal((1, 2, 3))
    assert torch.equal(attend(q, k, v, mask), F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    low = [t.bfloat16().requires_grad_(True) for t in (q, k, v)]
    y = attend(*low, mask, scale=0.5)
    assert y.dtype == torch.bfloat16
    wide = F.scaled_dot_product_attention(*(t.float() for t in low), attn_mask=mask, scale=0.5)
    assert torch.equal(y, wide.bfloat16())
    y.float().sum().backward()
    assert all(t.grad is not None and t.grad.dtype == torch.bfloat16 for t in low)
