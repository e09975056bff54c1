"""The paradigm registry: a new paradigm is one module and one registration line; the registry refuses a sampler
that does not take exactly its controls; every built-in paradigm's view and baseline work."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from mindmap import paradigms
from mindmap.controls import CFG, Control
from mindmap.paradigms import PARADIGMS, catalog, register
from mindmap.pipeline import Pipeline
from mindmap.viz import panel

from conftest import tiny_masked, tiny_tokenizer, write_tiny_pair
from toy_paradigm import TOY

TINY_MODELS = {"raster": "tiny-raster", "masked": "tiny-masked", "hybrid": "tiny-hybrid", "depth": "tiny-depth",
               "mq": "tiny-mq", "scale": "tiny-scale", "mar": "tiny-mar"}


@pytest.fixture
def toy_root(tmp_path):
    """The toy paradigm registered (one line), and a root holding one checkpoint of it; unregistered after."""
    register(TOY)
    try:
        write_tiny_pair(tmp_path / "toy", TOY.name, tiny_tokenizer(), tiny_masked())
        yield tmp_path
    finally:
        del PARADIGMS[TOY.name]


def test_a_new_paradigm_is_one_module_and_one_line(toy_root, capsys):
    pipe = Pipeline.from_pretrained(toy_root / "toy", device="cpu")
    frame = pipe(order="center-out", seed=2, cfg=2.0)
    first = frame.order[0].flatten().argmin().item()
    assert frame.network_calls == 64 and frame.done and first in (27, 28, 35, 36)   # a centre cell of the 8x8 grid
    assert torch.equal(pipe(order="random", seed=5).tokens, pipe(order="random", seed=5).tokens)
    with pytest.raises(ValueError, match="order must be one of 2 choices"):
        pipe(order="spiral")
    with pytest.raises(ValueError, match="cached: a any-order model has no KV cache"):
        pipe(cached=False)
    # The CLI's flags, the app's widgets and its API come from the catalog: the new control is in all three.
    assert "order" in [c.name for c in catalog()]
    from mindmap.__main__ import main
    assert main(["generate", "--model", "toy", "--root", str(toy_root), "--order", "center-out", "--seed", "2",
                 "--out", str(toy_root / "toy.png")]) == 0
    assert json.loads(capsys.readouterr().out)["network_calls"] == 64
    import app
    studio = app.Studio(toy_root)
    assert "order" in studio.takes("toy") and "order" in studio.api_signature().parameters
    assert studio.on_model_change("toy")["widgets"]["order"]["visible"]
    *_, last = studio.api_generate("toy", *[{"order": "center-out", "seed": 2}.get(c.name) for c in studio.controls])
    assert "step 64/64" in last.stats and last.view.size == (256, 256)


def test_the_registry_refuses_a_sampler_that_does_not_take_its_controls():
    with pytest.raises(TypeError, match="takes keyword arguments"):
        register(dataclasses.replace(TOY, name="broken", controls=TOY.controls[1:]))       # `order` undeclared
    with pytest.raises(ValueError, match="declared elsewhere as a sampling float"):
        register(dataclasses.replace(TOY, name="clash", controls=(TOY.controls[0], *TOY.controls[2:],
                                                                  dataclasses.replace(CFG, kind="int"))))
    with pytest.raises(ValueError, match="registered twice"):
        register(PARADIGMS["raster"])
    assert "broken" not in PARADIGMS and "clash" not in PARADIGMS


def test_the_catalog_is_every_control_once_condition_and_request_first():
    names = [c.name for c in catalog()]
    assert len(names) == len(set(names)) and names[:5] == ["class", "prompt", "style", "seed", "batch"]
    assert {c.name for p in PARADIGMS.values() for c in p.controls} == set(names[5:])
    assert all(isinstance(c, Control) for c in catalog())


@pytest.mark.parametrize("name", sorted(TINY_MODELS))
def test_each_paradigm_has_a_tiny_model_a_working_baseline_and_view(pipes, name):
    pipe = pipes(TINY_MODELS[name])
    assert pipe.paradigm is paradigms.get(name)
    real = pipe(seed=1, batch=2)
    naive = pipe(seed=1, batch=2, **pipe.paradigm.baseline(pipe))
    assert naive.network_calls >= real.network_calls and naive.image.shape == real.image.shape
    assert pipe.paradigm.codes_per_image(real) >= int((~real.mask[0]).sum()) > 0
    if pipe.paradigm.view is not None:                             # the app's size, and fitted under a panel
        shown = pipe.paradigm.view.render(real, 1, None)
        under = panel(real, 1, 160, pipe.paradigm.view)
        assert shown.width >= 300 and under.width == 3 * (160 + 6) + 6 and under.height > 160 + 28


def test_a_paradigm_without_a_cache_refuses_the_switch(pipes):
    with pytest.raises(ValueError, match="cached: a masked model has no KV cache"):
        pipes("tiny-masked")(cached=False)
    assert pipes("tiny-raster")(cached=False, seed=1).network_calls == 64
