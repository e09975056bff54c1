"""The Gradio app, end to end over HTTP: streaming, errors that name the control, the shipped model."""
from __future__ import annotations

import json
import urllib.request

import pytest
from apphelpers import SHIPPED, serve_app, tiny_app  # noqa: F401  (tiny_app is a fixture)
from conftest import TINY_CLASSES
from gradio_client import Client
from PIL import Image

TINY = {"model": "tiny-raster", "class_name": "face-smiling", "seed": 3, "cfg": 3.0, "temperature": 1.0,
        "top_k": 0, "top_p": 1.0}


def client(url: str) -> Client:
    return Client(url, verbose=False)


def test_generate_streams_every_token(tiny_app):
    job = client(tiny_app).submit(**TINY, api_name="/generate")
    updates = list(job)
    assert len(updates) >= 3
    image, order, confidence, schedule, stats = updates[-1]
    for path in (image, order, confidence):
        with Image.open(path) as im:
            assert im.size == (16 * 16, 16 * 16)  # 16 px tiny images upscaled to 256 px
    assert schedule is None                   # one cell per step: no schedule to plot
    assert "step 64/64" in stats and "tokens/s" in stats


@pytest.mark.parametrize("model, extra, updates_expected, stats_end", [
    ("tiny-masked", {"steps": 6}, 6, "step 6/6** · 6 network calls"),
    ("tiny-hybrid", {"steps": 4, "prefix": 8}, 12, "step 12/12** · 12 network calls"),
    ("tiny-depth", {"depth": 2}, 64, "step 64/64** · 64 network calls"),
    ("tiny-scale", {}, 7, "step 7/7** · 7 network calls"),
    ("tiny-mar", {"steps": 5, "diffusion_steps": 3}, 5, "step 5/5** · 5 network calls"),
])
def test_other_paradigms_stream_with_their_own_view(tiny_app, model, extra, updates_expected, stats_end):
    job = client(tiny_app).submit(**{**TINY, "model": model, **extra}, api_name="/generate")
    updates = list(job)
    assert len(updates) == updates_expected
    *_, view, stats = updates[-1]
    assert stats_end in stats
    expected = {"tiny-depth": (2 * (160 + 8) + 8, 160 + 18 + 8), "tiny-scale": (7 * (112 + 8) + 8, 2 * 112 + 4 + 18 + 8)}
    with Image.open(view) as im:
        assert im.size == expected.get(model, (900, 150))


@pytest.mark.parametrize("bad, control", [({"cfg": 0.2}, "cfg"), ({"class_name": "not-a-class"}, "class"),
                                          ({"top_k": 2.5}, "top_k"), ({"seed": -1}, "seed")])
def test_invalid_control_is_a_readable_error_naming_it(tiny_app, bad, control):
    with pytest.raises(Exception, match=rf"^{control} must be") as info:
        client(tiny_app).predict(**{**TINY, **bad}, api_name="/generate")
    assert "Traceback" not in str(info.value)


def test_classes_endpoint(tiny_app):
    assert client(tiny_app).predict("tiny-raster", api_name="/classes") == TINY_CLASSES


def test_page_says_when_no_model_is_present(tmp_path):
    with serve_app(tmp_path) as url:
        with urllib.request.urlopen(url + "config", timeout=10) as r:
            config = json.load(r)
    texts = [c.get("props", {}).get("value") for c in config["components"]]
    assert any(isinstance(t, str) and "No model found" in t for t in texts)


@pytest.mark.skipif(not SHIPPED.is_dir(), reason=f"{SHIPPED} not trained yet")
def test_shipped_model_offers_99_classes_and_draws_256px():
    with serve_app(None) as url:
        c = client(url)
        classes = c.predict("raster-emoji32", api_name="/classes")
        assert len(classes) == 99 and "face-smiling" in classes
        image, *_ = c.predict("raster-emoji32", "face-smiling", 0, 3.0, 1.0, 0, 1.0, api_name="/generate")
    with Image.open(image) as im:
        assert im.width == im.height >= 256


def test_controls_a_model_does_not_take_are_hidden(monkeypatch, tiny_root):
    import app
    from mindmap.registry import list_models
    raster = next(m for m in list_models(tiny_root) if m.name == "tiny-raster").describe()
    other = {**raster, "paradigm": "other", "controls": {"seed": raster["controls"]["seed"],
                                                         "steps": {"type": "int", "default": 8, "min": 1, "max": 64}}}
    monkeypatch.setattr(app, "MODELS", {"tiny-raster": raster, "other": other})
    monkeypatch.setattr(app, "UI_CONTROLS", app.CORE + ("steps",))
    info, *updates, dice, schedule, examples = app.on_model_change("other")
    visible = {name: u["visible"] for name, u in zip(app.UI_CONTROLS, updates)}
    assert visible == {"class": False, "seed": True, "cfg": False, "temperature": False, "top_k": False,
                       "top_p": False, "steps": True}
    assert "other" in info and dice["visible"] and not schedule["visible"]    # a paradigm with no view of its own
    monkeypatch.setitem(app.MODELS, "other", {**other, "paradigm": "masked"})
    *_, schedule, _ = app.on_model_change("other")
    assert schedule["visible"] and schedule["label"].startswith("Schedule")
    _, *updates, _, schedule, examples = app.on_model_change("tiny-raster")
    assert not examples["visible"]
    assert not schedule["visible"]
    cfg = dict(zip(app.UI_CONTROLS, updates))["cfg"]
    assert cfg["visible"] and (cfg["minimum"], cfg["maximum"], cfg["value"]) == (1.0, 10.0, 3.0)


@pytest.mark.parametrize("tokenizer, levels", [("tiny-vq", ["reconstruction"]), ("tiny-rq", ["depth 1", "depth 2", "depth 3"])])
def test_tokenizer_lab_shows_each_level_with_psnr_and_codes(tiny_app, tokenizer, levels):
    gallery = client(tiny_app).predict(tokenizer, "upside-down face (twitter)", None, api_name="/tokenize")
    captions = [item["caption"] for item in gallery]
    assert captions[0] == "input" and len(captions) == 1 + 2 * len(levels)
    for k, level in enumerate(levels):
        assert captions[1 + 2 * k].startswith(f"{level} · PSNR") and captions[2 + 2 * k] == f"{level} · code indices"


def test_tokenizer_lab_takes_an_upload_and_refuses_a_non_image(tiny_app, tmp_path):
    from gradio_client import handle_file
    picture = tmp_path / "red.png"
    Image.new("RGBA", (90, 60), (220, 30, 30, 255)).save(picture)
    gallery = client(tiny_app).predict("tiny-vq", None, handle_file(str(picture)), api_name="/tokenize")
    assert len(gallery) == 3
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    with pytest.raises(Exception, match="could not be read as a picture"):
        client(tiny_app).predict("tiny-vq", None, handle_file(str(text)), api_name="/tokenize")
    with pytest.raises(Exception, match="no such emoji is not in the list of choices"):
        client(tiny_app).predict("tiny-vq", "no such emoji", None, api_name="/tokenize")


def test_text_model_takes_a_prompt_and_refuses_an_empty_one(tiny_app):
    updates = list(client(tiny_app).submit(**{**TINY, "model": "tiny-text", "prompt": "red apple"},
                                           api_name="/generate"))
    assert "step 64/64" in updates[-1][-1]
    with pytest.raises(Exception, match="prompt must not be empty"):
        client(tiny_app).predict(**{**TINY, "model": "tiny-text", "prompt": "   "}, api_name="/generate")


def test_text_model_shows_its_example_prompts(tiny_root, monkeypatch):
    import app
    from mindmap.registry import list_models
    models = {m.name: m.describe() for m in list_models(tiny_root)}
    monkeypatch.setattr(app, "MODELS", models)
    monkeypatch.setattr(app, "UI_CONTROLS", app.CORE + tuple(sorted({c for d in models.values() for c in d["controls"]}
                                                                    - set(app.CORE) - app.NOT_IN_UI)))
    info, *updates, dice, view, examples = app.on_model_change("tiny-text")
    visible = {name: u["visible"] for name, u in zip(app.UI_CONTROLS, updates)}
    assert visible["prompt"] and not visible["class"] and "text prompts" in info
    assert examples["visible"] and examples["samples"] == [["red apple"], ["grinning face"]]
