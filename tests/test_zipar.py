"""ZipAR (next-row overlap) samples the law it defines, reads only decided cells, and keeps its schedule.

ZipAR is an approximation, unlike SJD: a row starts while the row above is unfinished, so its first code
is predicted from a stand-in (the row above's latest code, fed at the slot of that row's last cell) and
its codes see the row above only as far as it is decided. On a tiny model with a 2 x 2 grid that law is
computable exactly (see `zipar_distribution`); seeded draws match it by a chi-square test, and the same
draws are told apart from the plain raster law, so the test sees what ZipAR changes.
"""
from __future__ import annotations

import pytest
import torch

from test_sjd import (CELLS, DRAWS, all_images, chi_square_p, draw_images, exact_distribution,  # noqa: F401
                      teacher_logp, tiny_model)


@torch.no_grad()
def zipar_distribution(model) -> torch.Tensor:
    """P(image) under ZipAR with zip_window 1 on a 2 x 2 grid, for all images (class 0, guidance as sampled).

    Call 1 draws x0; call 2 draws x1 given x0 and, for row 1, x2 given x0 and the stand-in x0 at x1's slot
    (x1 is being decided in the same call); call 3 draws x3 given x0, x1, x2. So every conditional is teacher
    forcing on the image except x2's, which is teacher forcing on (x0, x0, x2)."""
    images = all_images()
    stand_in = images.clone()
    stand_in[:, 1] = images[:, 0]
    logp = teacher_logp(model, images)
    logp[:, 2] = teacher_logp(model, stand_in)[:, 2]
    return logp.gather(-1, images[..., None])[..., 0].sum(-1).exp()


def test_zipar_samples_its_own_law_not_the_raster_law(tiny_model):
    law, raster_law = zipar_distribution(tiny_model), exact_distribution(tiny_model)
    assert abs(float(law.sum()) - 1) < 1e-4 and float((law - raster_law).abs().sum()) > 0.1   # a real change
    codes, calls = draw_images(tiny_model, 1, DRAWS, zip_window=1)
    p_zipar, p_raster = chi_square_p(codes, law), chi_square_p(codes, raster_law)
    print(f"ZipAR draws: chi-square p-value {p_zipar:.3g} under its law, {p_raster:.3g} under the raster law; "
          f"{calls} network calls per image (raster {CELLS})")
    assert calls == 3 and p_zipar > 1e-3 and p_raster < 1e-6


def test_zipar_reads_only_decided_cells_and_keeps_its_schedule(pipes, monkeypatch):
    pipe = pipes("tiny-raster")
    model, grid = pipe.generator, pipe.tokenizer.grid
    seen = []                                    # per call: the fed cells and the slots each one's query read
    decode_at = model.decode_at

    def spy(codes, cells, visible):
        seen.append((cells.clone(), visible.clone()))
        return decode_at(codes, cells, visible)
    monkeypatch.setattr(model, "decode_at", spy)
    for zip_window, window in ((1, 1), (3, 1), (7, 1), (2, 4)):
        seen.clear()
        frames = list(pipe.stream(**{"class": pipe.classes[0]}, seed=2, zip_window=zip_window, jacobi_window=window,
                                  preview_every=1))
        final = frames[-1]
        assert (final.tokens >= 0).all() and sum(final.schedule) == grid * grid == final.step
        assert final.network_calls == len(final.schedule) == len(seen) + 1            # + the prefill
        if window == 1:                         # one code per active row per call: rows start zip_window apart
            assert final.network_calls == (grid - 1) * zip_window + grid
        else:
            assert final.network_calls <= (grid - 1) * zip_window + grid
        order = final.order[0].flatten()       # a call's cells share a colour: the first cell it decided, rising
        starts = sorted(set(order.tolist()))
        assert len(starts) == final.network_calls and starts[0] == 0
        prefix = model.prefix_len
        for call, (cells, visible) in enumerate(seen, start=1):
            decided = torch.zeros(model.seq_len, dtype=torch.bool)   # slots of cells decided before this call
            decided[:prefix] = True
            before = torch.nonzero(order < starts[call])[:, 0]
            decided[prefix + before[before < grid * grid - 1]] = True
            fed = (prefix + cells).tolist()
            for i, cell in enumerate(cells.tolist()):
                read = torch.nonzero(visible[i])[:, 0].tolist()
                assert prefix + cell in read and max(read) == prefix + cell       # itself, nothing after it
                assert all(decided[s] or s in fed for s in read), (zip_window, window, call)


def test_zipar_controls_are_checked_and_seeded(pipes):
    pipe = pipes("tiny-text")
    a = pipe(prompt="red apple", seed=3, zip_window=2, jacobi_window=4, batch=2)
    b = pipe(prompt="red apple", seed=3, zip_window=2, jacobi_window=4, batch=2)
    assert torch.equal(a.tokens, b.tokens) and a.tokens.min() >= 0 and a.network_calls < 64
    with pytest.raises(ValueError, match="zip_window"):
        pipe(prompt="red apple", seed=1, zip_window=8)
    with pytest.raises(ValueError, match="zip_window"):
        pipe(prompt="red apple", seed=1, zip_window=2, cached=False)
