"""Masked quantization: the MQ tokenizer (adaptive mask + de-mask) and the Stackformer, on tiny random models."""
import pytest
import torch

from mindmap.generators.stack import allowed_positions, kept_pairs, stack_loss
from mindmap.tokenizers.mq import keep_top

from conftest import tiny_mq_tokenizer, tiny_stack

N = 64


@pytest.mark.parametrize("ratio, kept", [(0.0, 64), (0.25, 48), (0.5, 32), (0.75, 16), (0.999, 1)])
def test_kept_count_matches_the_ratio(ratio, kept):
    scores = torch.rand(3, N, generator=torch.Generator().manual_seed(0))
    keep = keep_top(scores, ratio)
    assert keep.sum(1).tolist() == [kept] * 3
    if 0 < kept < N:                                                           # each row keeps its best cells
        assert all(scores[r][keep[r]].min() > scores[r][~keep[r]].max() for r in range(3))


def test_mq_encode_masks_the_rest_and_decodes():
    tok = tiny_mq_tokenizer()
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    codes = tok.encode(x, 0.5)
    assert codes.shape == (2, 8, 8) and ((codes >= 0).sum((1, 2)) == 32).all() and ((codes == -1).sum() == 64)
    all_codes, scores = tok.encode_all(x)
    assert torch.equal(codes[codes >= 0], all_codes[codes >= 0])             # a cell's code never depends on the ratio
    assert tok.decode(codes).shape == (2, 3, 16, 16)
    with pytest.raises(ValueError, match="mask_ratio"):
        tok.encode(x, 0.9)
    with pytest.raises(ValueError, match="at least one cell"):
        tok.decode(torch.full((1, 8, 8), -1))


def test_demask_keeps_kept_cells_and_fills_masked_ones_from_them():
    tok = tiny_mq_tokenizer()
    vectors = torch.randn(1, N, 4, generator=torch.Generator().manual_seed(1))
    kept = torch.zeros(1, N, dtype=torch.bool)
    kept[0, :20] = True
    with torch.no_grad():
        out = tok.demask(vectors, kept)
        other = vectors.clone()
        other[0, 3] += 1.0                                                    # change one kept cell
        out2 = tok.demask(other, kept)
    assert out.shape == (1, N, 4) and torch.equal(out[0, :20], vectors[0, :20])
    assert not torch.allclose(out[0, 20:], out2[0, 20:])                       # masked cells read the kept ones


def test_the_scorer_learns_through_the_reconstruction():
    tok = tiny_mq_tokenizer().train()
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    recon, kept, loss, z = tok(x, 0.5)
    ((recon - x).abs().mean() + loss).backward()
    assert kept.sum(1).tolist() == [32, 32] and z.shape == (2, N, 4)
    assert tok.scorer[0].weight.grad is not None and tok.scorer[0].weight.grad.abs().sum() > 0


def test_kept_pairs_are_in_raster_order_and_allowed_positions_leave_room():
    codes = torch.randint(0, 32, (4, N), generator=torch.Generator().manual_seed(2))
    scores = torch.rand(4, N, generator=torch.Generator().manual_seed(3))
    counts = torch.tensor([16, 30, 64, 40])
    pc, pos, valid = kept_pairs(codes, scores, counts)
    assert valid.sum(1).tolist() == counts.tolist() and pos.shape[1] == 64
    for row in range(4):
        p = pos[row][valid[row]]
        assert bool((p[1:] > p[:-1]).all()) and torch.equal(pc[row][valid[row]], codes[row, p])
        assert set(p.tolist()) == set(keep_top(scores[row:row + 1], 1 - counts[row].item() / N)[0].nonzero()[:, 0].tolist())
    allowed = allowed_positions(torch.tensor([-1, 10]), 0, torch.tensor([16, 16]), N)
    assert allowed[0].nonzero()[:, 0].tolist() == list(range(0, 49))           # 15 pairs must still fit after
    assert allowed[1].nonzero()[:, 0].tolist() == list(range(11, 49))


def test_stack_loss_scores_only_each_rows_kept_cells():
    model = tiny_stack()
    codes = torch.randint(0, 32, (3, N), generator=torch.Generator().manual_seed(4))
    scores = torch.rand(3, N, generator=torch.Generator().manual_seed(5))
    labels, counts = torch.tensor([0, 1, 3]), torch.tensor([16, 40, 64])

    def loss(c):
        with torch.no_grad():
            return stack_loss(model, c, scores, labels, counts)

    def bumped(row, cell):
        c = codes.clone()
        c[row, cell] = (c[row, cell] + 1) % 32
        return c

    base = loss(codes)
    assert torch.isfinite(base) and base > 0                                   # banned cells are -inf, never the target
    for row in (0, 1):                                                         # 16 and 40 of 64 kept
        assert torch.equal(loss(bumped(row, scores[row].argmin())), base)      # a masked-out cell: unseen
        assert not torch.equal(loss(bumped(row, scores[row].argmax())), base)  # a kept cell: scored


def test_stack_loss_scores_positions_among_the_allowed_cells_only():
    model = tiny_stack()
    codes, scores = torch.randint(0, 32, (2, N)), torch.rand(2, N, generator=torch.Generator().manual_seed(8))
    args = (codes, scores, torch.tensor([0, 1]), torch.tensor([16, 40]))
    torch.nn.init.zeros_(model.position_head.weight)                  # uniform position logits

    def spike_cell_0(module, inputs, out):                            # after the first pair cell 0 is banned: a
        return torch.cat([out[:, :1], out[:, 1:].index_fill(-1, torch.tensor([0]), 50.0)], dim=1)  # huge logit there

    with torch.no_grad():
        uniform = stack_loss(model, *args)
        hook = model.position_head.register_forward_hook(spike_cell_0)
        try:
            assert torch.equal(stack_loss(model, *args), uniform)    # must change nothing
        finally:
            hook.remove()


def test_cached_steps_equal_the_uncached_stack():
    model = tiny_stack()
    codes = torch.randint(0, 32, (2, N), generator=torch.Generator().manual_seed(6))
    pair_codes, positions, _ = kept_pairs(codes, torch.rand(2, N, generator=torch.Generator().manual_seed(7)),
                                          torch.tensor([20, 20]))
    labels, counts = torch.tensor([2, model.null_class]), torch.tensor([20, 20])
    model.setup_cache(2)
    try:
        with torch.no_grad():
            code_full, pos_full = model(pair_codes, positions, labels, counts)   # (B, T, V), (B, T, N)
            for i in range(pair_codes.shape[1]):
                x = model.start(labels, counts) if i == 0 else model.pairs(pair_codes[:, i - 1:i],
                                                                           positions[:, i - 1:i], i)
                pos = torch.tensor([i])
                h, code_logits = model.code_logits(x, pos)
                assert torch.allclose(code_logits[:, 0], code_full[:, i], atol=1e-5), i
                pos_logits = model.position_logits(h, pair_codes[:, i:i + 1], pos)
                assert torch.allclose(pos_logits[:, 0], pos_full[:, i], atol=1e-5), i
    finally:
        model.clear_caches()


@pytest.mark.parametrize("ratio", [0.0, 0.5, 0.75])
def test_generated_positions_are_unique_in_raster_order_and_cached_equals_naive(ratio, pipes):
    mq_pipe = pipes("tiny-mq")
    kept = round((1 - ratio) * N)
    f = mq_pipe(seed=2, mask_ratio=ratio, cfg=2.0, batch=2)
    naive = mq_pipe(seed=2, mask_ratio=ratio, cfg=2.0, batch=2, cached=False)
    assert torch.equal(f.tokens, naive.tokens) and f.network_calls == naive.network_calls == kept == f.total
    for row in range(2):
        chosen = ~f.mask[row].flatten()
        assert int(chosen.sum()) == kept                                       # unique cells, all within the grid
        order = f.order[row].flatten()[chosen]
        assert torch.equal(order, torch.arange(kept))                           # raster order of positions
    assert f.views["importance"].shape == (2, 8, 8) and f.image.shape == (2, 3, 16, 16)


def test_mq_frames_seeds_and_bad_ratio(pipes):
    mq_pipe = pipes("tiny-mq")
    frames = list(mq_pipe.stream(seed=1, mask_ratio=0.5, preview_every=8))
    assert [f.step for f in frames] == [8, 16, 24, 32] and "importance" not in frames[0].views
    a, b, c = mq_pipe(seed=4), mq_pipe(seed=4), mq_pipe(seed=5)
    assert torch.equal(a.image, b.image) and not torch.equal(a.tokens, c.tokens)
    for bad in (-0.1, 0.8, float("nan")):
        with pytest.raises(ValueError, match="mask_ratio"):
            mq_pipe(mask_ratio=bad)
