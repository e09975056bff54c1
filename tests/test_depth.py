"""Residual depth: the RQ tokenizer and the DnD-style depth generator, on tiny random models."""
import pytest
import torch

from mindmap.generators.depth import depth_loss, depth_mask
from mindmap.tokenizers.rq import random_depths

from conftest import tiny_depth, tiny_rq_tokenizer

N, D = 64, 3  # the tiny models' 8x8 grid and depth


def test_rq_encode_and_depth_d_decode_is_the_sum_of_the_first_d_code_vectors():
    tok = tiny_rq_tokenizer()
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    codes = tok.encode(x)
    assert codes.shape == (2, 8, 8, D) and codes.dtype == torch.long
    table = tok.quantizer.codebook.weight
    for d in range(1, D + 1):
        vectors = sum(table[codes[..., k]] for k in range(d)).permute(0, 3, 1, 2)
        assert torch.allclose(tok.decode(codes[..., :d]), tok.decode_vectors(vectors), atol=1e-6)
    assert not torch.allclose(tok.decode(codes[..., :1]), tok.decode(codes))
    with pytest.raises(ValueError, match="codes must be"):
        tok.decode(codes[..., :0])
    with pytest.raises(ValueError, match="codes must be"):
        tok.decode(torch.zeros(2, 8, 8, D + 1, dtype=torch.long))


def test_rq_codes_are_greedy_residual_nearest_neighbours():
    tok = tiny_rq_tokenizer()
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    codes = tok.encode(x)
    table = tok.quantizer.codebook.weight
    residual = tok.latents(x).detach().permute(0, 2, 3, 1).reshape(-1, 4)
    for d in range(D):
        k = torch.cdist(residual, table).argmin(1)
        assert torch.equal(k, codes[..., d].flatten())
        residual = residual - table[k]


def test_random_depths_and_masks():
    d = random_depths(4000, 4, torch.Generator().manual_seed(0))
    assert d.min() == 1 and d.max() == 4 and abs((d == 4).float().mean().item() - 0.5) < 0.03
    keep = depth_mask(8, 4, torch.Generator().manual_seed(1))
    assert torch.equal(keep, keep.cummin(dim=1).values)     # a prefix of depths per row


def test_teacher_forcing_equals_the_step_by_step_composition():
    model = tiny_depth()
    codes = torch.randint(0, 32, (2, N, D), generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, model.null_class])
    with torch.no_grad():
        full = model(codes, labels)                                       # (B, N, D, V)
        for t in (0, 5, N - 1):
            x = model.inputs(labels, codes[:, :t])
            for d in range(D):
                x = model.run(x, model.segment(d))
                assert torch.allclose(model.head(d, x[:, -1]), full[:, t, d], atol=1e-5)
                x = model.inject(d, x, codes[:, :t + 1, d])
    assert full.shape == (2, N, D, 32)


def test_a_head_sees_only_earlier_depths_of_its_cell_and_earlier_cells():
    model = tiny_depth()
    codes = torch.randint(0, 32, (1, N, D), generator=torch.Generator().manual_seed(2))
    other = codes.clone()
    other[0, 10, 1] = (other[0, 10, 1] + 1) % 32                          # cell 10, depth 2
    with torch.no_grad():
        a, b = model(codes, torch.tensor([1])), model(other, torch.tensor([1]))
    assert torch.allclose(a[0, :10], b[0, :10], atol=1e-6)               # earlier cells
    assert torch.allclose(a[0, 10, :2], b[0, 10, :2], atol=1e-6)         # heads 1-2 of cell 10
    assert not torch.allclose(a[0, 10, 2], b[0, 10, 2])                   # head 3 sees depth 2
    assert not torch.allclose(a[0, 11], b[0, 11])                         # the next cell sees it


def test_depth_loss_ignores_truncated_depths():
    model = tiny_depth()
    labels = torch.tensor([0, 1, 2, 0])
    codes = torch.randint(0, 32, (4, N, D), generator=torch.Generator().manual_seed(3))
    keep = depth_mask(4, D, torch.Generator().manual_seed(2))                 # the mask depth_loss draws first
    assert keep.tolist()[0] == [True, False, False]                           # row 0 keeps depth 1 only

    def loss(c):
        with torch.no_grad():
            return depth_loss(model, c.flatten(1), labels, torch.Generator().manual_seed(2))

    dropped, kept = codes.clone(), codes.clone()
    dropped[0, 10, 1] = (dropped[0, 10, 1] + 1) % 32                          # row 0, a truncated depth
    kept[0, 10, 0] = (kept[0, 10, 0] + 1) % 32                                # row 0, its kept depth
    base = loss(codes)
    assert torch.isfinite(base) and base > 0
    assert torch.equal(loss(dropped), base)                                   # neither input nor target
    assert not torch.equal(loss(kept), base)


def test_cached_step_by_step_logits_equal_teacher_forcing():
    model = tiny_depth()
    codes = torch.randint(0, 32, (2, N, D), generator=torch.Generator().manual_seed(5))
    labels = torch.tensor([1, model.null_class])
    model.setup_cache(2, D)
    try:
        with torch.no_grad():
            full = model(codes, labels)                                       # (B, N, D, V), no cache used
            for t in range(N):
                x = model.inputs(labels, codes[:, :0]) if t == 0 else model.cell_input(codes[:, t - 1:t])
                pos = torch.tensor([t])
                for d in range(D):
                    x = model.run(x, model.segment(d), pos)
                    assert torch.allclose(model.head(d, x[:, -1]), full[:, t, d], atol=1e-5), (t, d)
                    x = model.inject(d, x, codes[:, t:t + 1, d])
    finally:
        model.clear_caches()


@pytest.mark.parametrize("depth", [1, 2, D])
def test_sampler_cached_equals_naive_at_every_depth(depth, pipes):
    depth_pipe = pipes("tiny-depth")
    common = dict(seed=4, depth=depth, cfg=2.0, batch=2)
    real, naive = depth_pipe(**common), depth_pipe(cached=False, **common)
    assert torch.equal(real.views["codes"], naive.views["codes"]) and real.network_calls == naive.network_calls == N
    assert real.views["codes"].shape == (2, 8, 8, depth) and len(real.views["depth_strip"]) == depth
    assert real.image.shape == (2, 3, 16, 16)


def test_depth_d_uses_only_the_layers_up_to_its_head(tiny_root):
    from mindmap.pipeline import Pipeline
    pipe = Pipeline.from_pretrained(tiny_root / "tiny-depth", device="cpu")
    before = pipe(seed=1, depth=1).views["codes"]
    with torch.no_grad():
        for block in pipe.generator.blocks[pipe.generator.config.head_layers[0]:]:
            for p in block.parameters():
                p.add_(1.0)                                               # wreck the layers above head 1
    assert torch.equal(pipe(seed=1, depth=1).views["codes"], before)
    assert not torch.equal(pipe(seed=1, depth=2).views["codes"][..., 0], before[..., 0])


def test_depth_frames_and_seeds(pipes):
    depth_pipe = pipes("tiny-depth")
    frames = list(depth_pipe.stream(seed=3, preview_every=16))
    assert [f.step for f in frames] == [16, 32, 48, 64] and frames[-1].done
    assert int((~frames[0].mask[0]).sum()) == 16 and len(frames[0].views["depth_strip"]) == D
    assert torch.all(frames[0].views["depth_strip"][0][0, :, 8:] == 0.0)          # open rows grey at every depth
    conf = frames[-1].confidence[0]
    assert bool(((conf > 0) & (conf <= 1)).all())
    a, b, c = depth_pipe(seed=7), depth_pipe(seed=7), depth_pipe(seed=8)
    assert torch.equal(a.image, b.image) and not torch.equal(a.views["codes"], c.views["codes"])


@pytest.mark.parametrize("values", [{"depth": 0}, {"depth": D + 1}, {"depth": 1.5}])
def test_bad_depth_names_the_control(values, pipes):
    depth_pipe = pipes("tiny-depth")
    with pytest.raises(ValueError, match="depth"):
        depth_pipe(**values)
