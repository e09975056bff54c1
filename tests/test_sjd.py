"""Speculative Jacobi decoding keeps the raster model's distribution, and its runs stream like any other.

The distribution test uses a tiny raster model over 4 cells and 3 codes: its distribution over all
81 images is computed exactly (teacher forcing, guidance and filtering as the sampler applies them)
and compared with seeded draws by a chi-square test: plain decoding in one batch of 20,000, SJD one
image at a time (rows of a batch advance together, by the fewest cells any row decided, so a big
batch would rarely accept past its first draft). The same test with a wrong acceptance rule or a
wrong redraw after a rejection fails, so it can tell.
"""
from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest
import torch

from mindmap.generators.raster import RasterGPT
from mindmap.sampling import cfg_mix, filter_logits, redraft
from mindmap.samplers import raster as raster_sampler
from mindmap.samplers.scaffold import GridState, Guidance

CELLS, VOCAB, DRAWS, SJD_DRAWS = 4, 3, 20_000, 2_000
WRONG_DRAWS = 500          # a wrong rule is far off: at 2,000 draws p = 0 (always accept) and 8e-76 (redraw from p)
CFG, TEMPERATURE, TOP_K = 2.0, 1.0, 0


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    model = RasterGPT(vocab_size=VOCAB, num_classes=2, grid=2, dim=32, n_layers=2, n_heads=2, dropout=0.0).eval()
    with torch.no_grad():                      # weights large enough that the cells depend on each other
        for p in model.parameters():
            if p.ndim > 1:
                p.mul_(6.0)
    return model


@torch.no_grad()
def exact_distribution(model) -> torch.Tensor:
    """P(image) for all VOCAB ** CELLS images (class 0, cfg, temperature, top-k as the sampler applies them)."""
    images = all_images()
    return teacher_logp(model, images).gather(-1, images[..., None])[..., 0].sum(-1).exp()


def all_images() -> torch.Tensor:
    return torch.tensor(list(itertools.product(range(VOCAB), repeat=CELLS)))


def teacher_logp(model, codes: torch.Tensor) -> torch.Tensor:
    """log p (N, CELLS, VOCAB) of every cell given the codes before it (class 0, guided and filtered as sampled)."""
    labels = torch.zeros(len(codes), dtype=torch.long)
    logits = torch.cat([model(codes, labels), model(codes, torch.full_like(labels, model.null_class))])
    return filter_logits(cfg_mix(logits, CFG), TEMPERATURE, TOP_K, 1.0).log_softmax(-1)


@torch.no_grad()
def draw_images(model, window: int, draws: int = DRAWS, seed: int = 0, zip_window: int = 0) -> tuple[torch.Tensor, int]:
    """`draws` images of class 0: window 1 decodes in one batch (plain, or ZipAR with `zip_window`: its schedule does
    not depend on the codes), SJD one image at a time. Returns (codes (draws, CELLS), network calls per image)."""
    generator = torch.Generator().manual_seed(seed)
    batch = draws if window == 1 else 1
    codes, calls = [], 0
    for _ in range(draws // batch):
        guide = Guidance(torch.zeros(batch, dtype=torch.long), model.null_class, CFG)
        state = GridState(SimpleNamespace(grid=2), batch, "cpu")
        if window == zip_window + 1 == 1:
            list(raster_sampler.raster_cells(model, state, guide, generator, CELLS, CFG, TEMPERATURE, TOP_K, 1.0))
        else:
            list(raster_sampler.chain_cells(model, state, guide, generator, window, zip_window, CFG, TEMPERATURE,
                                            TOP_K, 1.0))
        codes.append(state.tokens)
        calls += state.calls
    return torch.cat(codes), calls / (draws // batch)


def chi_square_p(codes: torch.Tensor, probs: torch.Tensor) -> float:
    """p-value of the draws `codes` (N, CELLS) under `probs` (chi-square; bins expecting < 5 draws pooled)."""
    index = (codes * VOCAB ** torch.arange(CELLS - 1, -1, -1)).sum(-1)
    counts = torch.bincount(index, minlength=len(probs)).double()
    expected = probs.double() * len(codes)
    big = expected >= 5
    observed = torch.cat([counts[big], counts[~big].sum()[None]])
    expected = torch.cat([expected[big], expected[~big].sum()[None]])
    keep = expected > 0
    stat = ((observed[keep] - expected[keep]) ** 2 / expected[keep]).sum()
    dof = int(keep.sum()) - 1
    return float(torch.special.gammaincc(torch.tensor(dof / 2.0, dtype=torch.float64), stat / 2))


def test_sjd_keeps_the_distribution_and_wrong_rules_do_not(tiny_model, monkeypatch):
    probs = exact_distribution(tiny_model)
    assert abs(float(probs.sum()) - 1) < 1e-4 and float(probs.max()) < 0.2        # a spread, dependent law
    plain, calls = draw_images(tiny_model, 1)
    assert calls == CELLS
    p_values, calls = {"plain": chi_square_p(plain, probs)}, {}
    for window in (2, 3):                      # 2: the pass also scores the cell after the window; 3: to the end
        codes, calls[window] = draw_images(tiny_model, window, SJD_DRAWS)
        p_values[window] = chi_square_p(codes, probs)
    print(f"chi-square p-values {p_values}, SJD network calls per image {calls} (plain {CELLS})")
    assert min(p_values.values()) > 1e-3 and max(calls.values()) < CELLS
    # It can fail: accepting every draft, or redrawing a rejected cell from p instead of max(0, p - q).
    monkeypatch.setattr(raster_sampler, "speculative_accept", lambda p, q, d, g: torch.ones_like(d, dtype=torch.bool))
    assert chi_square_p(draw_images(tiny_model, 3, WRONG_DRAWS)[0], probs) < 1e-6
    monkeypatch.undo()
    monkeypatch.setattr(raster_sampler, "residual_sample", lambda p, q, g: torch.multinomial(p, 1, generator=g)[:, 0])
    assert chi_square_p(draw_images(tiny_model, 3, WRONG_DRAWS)[0], probs) < 1e-6


def test_sjd_stream_counts_calls_and_colours_cells_by_call(pipes):
    pipe = pipes("tiny-raster")
    frames = list(pipe.stream(**{"class": pipe.classes[0]}, seed=1, jacobi_window=8, preview_every=1))
    final = frames[-1]
    assert final.step == final.total == 64 and sum(final.schedule) == 64
    assert final.network_calls == len(final.schedule) < 64
    assert [f.network_calls for f in frames] == list(range(1, len(frames) + 1))        # one frame per call
    order = final.order[0].flatten()
    starts = torch.tensor([0, *itertools.accumulate(final.schedule)][:-1])
    assert torch.equal(order, torch.repeat_interleave(starts, torch.tensor(final.schedule)))
    plain = pipe(**{"class": pipe.classes[0]}, seed=1)
    assert plain.schedule == [1] * 64 and torch.equal(plain.order[0].flatten(), torch.arange(64))
    with pytest.raises(ValueError, match="jacobi_window"):
        pipe(**{"class": pipe.classes[0]}, seed=1, jacobi_window=8, cached=False)
    with pytest.raises(ValueError, match="jacobi_window"):
        pipe(**{"class": pipe.classes[0]}, seed=1, jacobi_window=0)


def test_sjd_runs_text_models_and_is_seeded(pipes):
    pipe = pipes("tiny-text")
    a = pipe(prompt="red apple", seed=3, jacobi_window=4, batch=2)
    b = pipe(prompt="red apple", seed=3, jacobi_window=4, batch=2)
    assert torch.equal(a.tokens, b.tokens) and a.tokens.min() >= 0 and a.network_calls < 64


def test_redraft_moves_drafts_to_the_new_law_and_keeps_what_it_can():
    """The Jacobi update re-drafts open cells from q (last pass) to p (this pass) by the speculative rule: every
    new draft is an exact draw from p, and a draft stays unchanged with probability sum min(p, q), so drafts settle
    where the model's view of a cell settles (fewer calls than fresh draws at large windows)."""
    g = torch.Generator().manual_seed(0)
    q = torch.tensor([0.5, 0.3, 0.1, 0.1, 0.0])
    p = torch.tensor([0.1, 0.3, 0.2, 0.2, 0.2])
    n = 40_000
    drafts = torch.multinomial(q, n, replacement=True, generator=g).view(n, 1)
    new = redraft(drafts, q.expand(n, 1, 5), p.expand(n, 1, 5), g)
    counts = torch.bincount(new.flatten(), minlength=5).double()
    stat = float(((counts - n * p) ** 2 / (n * p)).sum())
    assert stat < 18.5                                              # chi-square, 4 dof: p > 0.001
    kept = float((new == drafts).double().mean())
    assert abs(kept - float(torch.minimum(p, q).sum())) < 0.01     # 0.6 kept: the coupling is maximal
    same = redraft(drafts, q.expand(n, 1, 5), q.expand(n, 1, 5), g)
    assert torch.equal(same, drafts)                                # an unchanged law keeps every draft
