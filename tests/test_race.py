"""The race: every class generator decodes one class and seed, taking turns on one clock, in the CLI and the app."""
from __future__ import annotations

import json

import pytest
import torch
from conftest import TINY_CLASSES
from PIL import Image
from test_cli import run

from mindmap.race import Board, race

ENTRANTS = ("tiny-raster", "tiny-masked", "tiny-scale", "tiny-depth")


def test_the_least_advanced_model_always_goes_next_and_images_match_solo_runs(pipes):
    entrants = {name: pipes(name) for name in ENTRANTS}
    laps = list(race(entrants, TINY_CLASSES[1], seed=4))
    clock = dict.fromkeys(ENTRANTS, 0.0)
    finished = set()
    for lap in laps:                       # the model stepped had spent no more than any model still decoding
        assert lap.model not in finished
        assert clock[lap.model] <= min(t for name, t in clock.items() if name not in finished) + 1e-9
        assert lap.seconds > clock[lap.model]
        clock[lap.model] = lap.seconds
        if lap.frame.done:
            finished.add(lap.model)
    assert finished == set(ENTRANTS)
    for name, pipe in entrants.items():    # taking turns changes no model's picture
        last = [lap.frame for lap in laps if lap.model == name][-1]
        assert torch.equal(last.tokens, pipe(**{"class": TINY_CLASSES[1]}, seed=4).tokens), name
    board = Board(list(ENTRANTS))
    for lap in laps:
        board.update(lap)
    assert board.image().size == (4 * 136 + 8, 176)
    assert [r["model"] for r in board.results()] == list(ENTRANTS) and all(r["done"] for r in board.results())


def test_a_race_refuses_a_text_model_and_an_unknown_class(pipes):
    with pytest.raises(ValueError, match="a race is between class generators; tiny-text is conditioned on text"):
        next(race({"tiny-raster": pipes("tiny-raster"), "tiny-text": pipes("tiny-text")}, TINY_CLASSES[0], 0))
    with pytest.raises(ValueError, match="class must be one of"):
        next(race({"tiny-raster": pipes("tiny-raster")}, "no-such-class", 0))


def test_race_cli_writes_a_gif_of_every_entrant(tiny_root, tmp_path, capsys):
    out = tmp_path / "race.gif"
    rc, stdout, _ = run(capsys, "race", "--class", TINY_CLASSES[0], "--seed", 2, "--out", out, "--root", tiny_root,
                        "--models", "tiny-raster,tiny-masked,tiny-mar")
    assert rc == 0
    report = json.loads(stdout)
    assert [r["model"] for r in report["results"]] == ["tiny-raster", "tiny-masked", "tiny-mar"]
    assert all(r["done"] and r["ms"] > 0 for r in report["results"])
    gif = Image.open(out)
    assert gif.n_frames >= 2 and gif.size == (3 * 136 + 8, 176)
    rc, _, err = run(capsys, "race", "--class", TINY_CLASSES[0], "--out", tmp_path / "x.png", "--root", tiny_root)
    assert rc == 2 and "--out must be a .gif file" in err
    rc, _, err = run(capsys, "race", "--class", "no-such-class", "--out", out, "--root", tiny_root)
    assert rc == 2 and "no class generator knows the class 'no-such-class'" in err
