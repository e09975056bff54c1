"""The Gradio app: over HTTP (streaming, errors that name the control, the shipped model) and in process (the
page's state per model, the API's signature)."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import torch
from apphelpers import SHIPPED, serve_app, tiny_app  # noqa: F401  (tiny_app is a fixture)
from conftest import EXAMPLE_PROMPTS, TINY_CLASSES
from gradio_client import Client
from PIL import Image

RASTER = {"model": "tiny-raster", "class_name": "face-smiling", "seed": 3, "cfg": 3.0}


def client(url: str) -> Client:
    return Client(url, verbose=False, download_files=tempfile.gettempdir())   # conftest's client_temp folder


def test_generate_streams_every_token(tiny_app):
    updates = list(client(tiny_app).submit(**RASTER, temperature=1.0, top_k=0, top_p=1.0, api_name="/generate"))
    assert len(updates) >= 3
    image, order, confidence, view, stats = updates[-1]
    for path, size in ((image, 16), (order, 8), (confidence, 8)):  # sent small (the picture at its own 16 px, the
        with Image.open(path) as im:                                # maps a pixel per cell), scaled up by the page
            assert im.size == (size, size)
    with Image.open(view) as im:              # codes decided per network call (one each without SJD)
        assert im.size == (900, 150)
    assert "step 64/64" in stats and "64 network calls" in stats and "tokens/s" in stats
    final = list(client(tiny_app).submit(**RASTER, jacobi_window=8, api_name="/generate"))[-1][-1]
    assert "step 64/64" in final and "64 network calls" not in final     # SJD: fewer calls for the same cells


@pytest.mark.parametrize("model, extra, updates_expected, stats_end, view_size", [
    ("tiny-masked", {"steps": 6}, 6, "step 6/6** · 6 network calls", (900, 150)),
    ("tiny-hybrid", {"steps": 4, "prefix": 8}, 12, "step 12/12** · 12 network calls", (900, 150)),
    ("tiny-depth", {"depth": 2}, 64, "step 64/64** · 64 network calls", (2 * (160 + 8) + 8, 160 + 18 + 8)),
    ("tiny-scale", {}, 7, "step 7/7** · 7 network calls", (7 * (112 + 8) + 8, 2 * 112 + 4 + 18 + 8)),
    ("tiny-mar", {"steps": 5, "diffusion_steps": 3}, 5, "step 5/5** · 5 network calls", (900, 150)),
    # MQ at ratio 0.5 keeps 32 of 64 cells; its last frame adds the importance map beside the kept cells.
    ("tiny-mq", {"mask_ratio": 0.5}, 32, "step 32/32** · 32 network calls", (2 * (160 + 8) + 8, 160 + 18 + 8)),
])
def test_other_paradigms_stream_with_their_own_view(tiny_app, model, extra, updates_expected, stats_end, view_size):
    job = client(tiny_app).submit(model=model, class_name="food-fruit", seed=1, **extra, api_name="/generate")
    updates = list(job)
    assert len(updates) == updates_expected
    *_, view, stats = updates[-1]
    assert stats_end in stats
    with Image.open(view) as im:
        assert im.size == view_size


def test_a_left_out_control_takes_the_models_default(tiny_app):
    # MAR's default is 16 AR steps: streamed one frame a step, whatever a widget elsewhere shows.
    updates = list(client(tiny_app).submit(model="tiny-mar", diffusion_steps=2, api_name="/generate"))
    assert len(updates) == 16 and "step 16/16" in updates[-1][-1]


@pytest.mark.parametrize("bad, needle", [
    ({"cfg": 0.2}, "cfg must be"), ({"class_name": "not-a-class"}, "class must be"), ({"top_k": 2.5}, "top_k must be"),
    ({"seed": -1}, "seed must be"), ({"steps": 4}, "unknown control 'steps'"),          # raster takes no steps
    ({"prompt": "red apple"}, "unknown control 'prompt'"), ({"model": "nope"}, "model must be one of"),
])
def test_bad_requests_are_readable_errors_naming_what_is_wrong(tiny_app, bad, needle):
    with pytest.raises(Exception, match=needle) as info:
        client(tiny_app).predict(**{**RASTER, **bad}, api_name="/generate")
    assert "Traceback" not in str(info.value)


def test_classes_and_models_endpoints(tiny_app):
    c = client(tiny_app)
    assert c.predict("tiny-raster", api_name="/classes") == TINY_CLASSES
    models = {m["name"]: m for m in c.predict(api_name="/models")}
    assert models["tiny-mq"]["paradigm"] == "mq" and models["tiny-mq"]["controls"]["mask_ratio"]["max"] == 0.75
    with pytest.raises(Exception, match="model must be one of"):
        c.predict("nope", api_name="/classes")


def test_generate_signature_does_not_depend_on_the_models_installed(tiny_root, tmp_path):
    import app
    one = tmp_path / "one"
    shutil.copytree(tiny_root / "tiny-raster", one / "tiny-raster")
    apis = [app.build(root).get_api_info()["named_endpoints"]["/generate"] for root in (tiny_root, one, tmp_path / "none")]
    assert apis[0] == apis[1] == apis[2]
    params = [p["parameter_name"] for p in apis[0]["parameters"]]
    assert params[:5] == ["model", "class_name", "prompt", "style", "seed"]
    assert {"steps", "depth", "mask_ratio", "prefix", "diffusion_steps", "cfg", "top_k"} <= set(params)
    assert all(p["parameter_has_default"] and p["parameter_default"] is None for p in apis[0]["parameters"][1:])


def test_page_says_when_no_model_is_present(tmp_path):
    with serve_app(tmp_path) as url:
        with urllib.request.urlopen(url + "config", timeout=10) as r:
            config = json.load(r)
    shown = [c.get("props", {}) for c in config["components"]]
    assert any(isinstance(p.get("value"), str) and "No model found" in p["value"] and p.get("visible") for p in shown)


@pytest.mark.skipif(not SHIPPED.is_dir(), reason=f"{SHIPPED} not trained yet")
def test_shipped_model_offers_99_classes_and_draws_32px():
    with serve_app(None) as url:
        c = client(url)
        classes = c.predict("raster-emoji32", api_name="/classes")
        assert len(classes) == 99 and "face-smiling" in classes
        image, *_ = c.predict("raster-emoji32", "face-smiling", api_name="/generate")
    with Image.open(image) as im:                                 # its own size: the page scales it up
        assert im.size == (32, 32) and len(im.getcolors(maxcolors=1024)) > 8


def test_each_model_shows_the_controls_it_takes_and_hides_the_rest(tiny_root):
    import app
    studio = app.Studio(tiny_root)
    change = studio.on_model_change("tiny-masked")
    visible = {name: u["visible"] for name, u in change["widgets"].items()}
    assert {n for n, v in visible.items() if v} == {"class", "seed", "cfg", "temperature", "top_k", "top_p", "steps",
                                                      "schedule", "randomness", "cfg_schedule"}
    steps = change["widgets"]["steps"]
    assert (steps["minimum"], steps["maximum"], steps["value"]) == (1, 64, 8)
    assert change["view"]["visible"] and change["view"]["label"].startswith("Schedule")
    assert change["dice"]["visible"] and not change["examples"]["visible"] and "masked" in change["info"]
    raster = studio.on_model_change("tiny-raster")
    assert raster["view"]["visible"] and raster["view"]["label"] == "Codes decided per network call"
    assert not raster["widgets"]["steps"]["visible"] and not change["widgets"]["jacobi_window"]["visible"]
    window = raster["widgets"]["jacobi_window"]
    assert window["visible"] and (window["minimum"], window["maximum"], window["value"]) == (1, 32, 1)
    zipped = raster["widgets"]["zip_window"]                # 8 x 8 grid: a row may start 1 to 7 codes behind
    assert zipped["visible"] and (zipped["minimum"], zipped["maximum"], zipped["value"]) == (0, 7, 0)
    assert not change["widgets"]["zip_window"]["visible"]
    cfg = raster["widgets"]["cfg"]
    assert cfg["visible"] and (cfg["minimum"], cfg["maximum"], cfg["value"]) == (1.0, 10.0, 3.0)


def test_previews_are_bounded_by_wall_clock_and_the_final_picture_always_comes(tiny_root, monkeypatch):
    import app
    studio = app.Studio(tiny_root)
    monkeypatch.setenv("MINDMAP_PREVIEW_INTERVAL", "60")
    sent = list(studio.generate("tiny-masked", {"steps": 6, "seed": 1}))
    assert len(sent) == 2 and "step 1/6" in sent[0].stats and "step 6/6" in sent[-1].stats
    monkeypatch.setenv("MINDMAP_PREVIEW_INTERVAL", "0")
    every = list(studio.generate("tiny-masked", {"steps": 6, "seed": 1}))
    assert len(every) == 6 and every[-1].image.tobytes() == sent[-1].image.tobytes()
    monkeypatch.setenv("MINDMAP_PREVIEW_INTERVAL", "abc")
    assert app.preview_interval() == app.PREVIEW_INTERVAL


def test_a_request_over_the_time_limit_stops_with_its_partial_picture(tiny_root, monkeypatch):
    """A request whose cost was underestimated (here: never estimated) stops at the limit with what it has."""
    import app
    studio = app.Studio(tiny_root)
    monkeypatch.setattr(app.Studio, "check_budget", lambda *a: None)
    monkeypatch.setenv("MINDMAP_REQUEST_SECONDS", "0.01")
    sent = list(studio.generate("tiny-mar", {"steps": 16, "diffusion_steps": 25, "seed": 1}))
    assert "**stopped**: over this app's limit of 0.01 s per request" in sent[-1].stats
    assert "step 16/16" not in sent[-1].stats and sent[-1].image.size == (16, 16)
    monkeypatch.setenv("MINDMAP_REQUEST_SECONDS", "60")
    assert "stopped" not in list(studio.generate("tiny-mar", {"steps": 4, "diffusion_steps": 2}))[-1].stats


def test_a_request_measured_over_the_budget_is_refused_naming_its_controls(tiny_root, monkeypatch):
    """F19: a request at controls measured too costly is refused before any work (whatever its seed or class);
    at controls never measured, after a short probe; the model's defaults still run."""
    import app
    import gradio as gr
    from mindmap.registry import load_pipeline
    studio = app.Studio(tiny_root)
    pipe = load_pipeline("tiny-mar", tiny_root)
    costly = {"steps": 16, "diffusion_steps": 250}
    assert "step 16/16" in list(studio.generate("tiny-mar", {**costly, "seed": 3}))[-1].stats   # measured: it ran
    whole, steps = studio.budget.estimate(app.WorkBudget.key("tiny-mar", pipe.controls(**costly)))
    assert steps == 16 and whole > 0
    monkeypatch.setenv("MINDMAP_REQUEST_SECONDS", f"{whole / 4:.6f}")
    streamed = []
    stream = pipe.stream
    monkeypatch.setattr(pipe, "stream", lambda **kw: streamed.append(kw) or stream(**kw))
    with pytest.raises(gr.Error) as refused:
        list(studio.generate("tiny-mar", {**costly, "seed": 4, "class": pipe.classes[-1]}))
    message = refused.value.message
    assert message.startswith("this request would take about") and "(16 steps at" in message
    assert "diffusion_steps=250 (default 25)" in message and "steps=16 (default" not in message
    assert streamed == []                                  # refused before any work
    monkeypatch.setattr(app, "PROBE_SECONDS", 0.0)         # never measured at 240 steps: probed, then refused
    with pytest.raises(gr.Error) as probed:
        list(studio.generate("tiny-mar", {**costly, "diffusion_steps": 240}))
    assert "diffusion_steps=240 (default 25)" in probed.value.message and len(streamed) == 1
    monkeypatch.setenv("MINDMAP_REQUEST_SECONDS", "60")
    assert "step 16/16" in list(studio.generate("tiny-mar", {"seed": 1}))[-1].stats


def test_the_work_budget_keeps_the_most_recent_costs():
    import app
    budget = app.WorkBudget(size=3)
    for n in range(5):
        budget.record(("m", ("steps", n)), 0.5, n + 1)
    budget.record(("m", ("steps", 2)), 1.0, 3)           # refreshed: now the most recent
    assert list(budget.per_step) == [("m", ("steps", 3)), ("m", ("steps", 4)), ("m", ("steps", 2))]
    assert budget.estimate(("m", ("steps", 2))) == (3.0, 3) and budget.estimate(("m", ("steps", 0))) is None


def test_a_refused_request_is_one_log_line_and_no_traceback(tiny_root, caplog):
    import logging

    import app
    import gradio as gr
    studio = app.Studio(tiny_root)
    for model, values, needle in (("tiny-raster", {"cfg": 99}, "cfg must be a number in [1.0, 10.0], got 99"),
                                  (["tiny-raster"], {}, "model must be one of")):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="mindmap.app"), pytest.raises(gr.Error) as refused:
            list(studio.generate(model, values))
        assert needle in str(refused.value) and refused.value.print_exception is False
        assert [r.getMessage() for r in caplog.records] == [f"refused request: {refused.value.message}"]


def test_the_pictures_sent_leave_the_disk_after_their_lifetime(tiny_root, tmp_path):
    """F17: Gradio writes every picture it sends into its temp folder; the app's cleaner deletes those older than
    MINDMAP_CACHE_SECONDS, so a long-running app's disk stays bounded."""
    temp = tmp_path / "gradio"

    def pictures():                  # os.walk: the cleaner may remove a folder while it is read
        return [Path(d, f) for d, _, files in os.walk(temp) for f in files if f.endswith(".png")]
    with serve_app(tiny_root, env={"MINDMAP_CACHE_SECONDS": "4", "GRADIO_TEMP_DIR": str(temp)}) as url:
        updates = list(Client(url, verbose=False, download_files=False).submit(**RASTER, api_name="/generate"))
        sent = {Path(picture["path"]) for update in updates for picture in update[:4] if picture}
        assert len(sent) >= 4 and all(temp in path.parents for path in sent)   # written into the temp folder
        deadline = time.monotonic() + 20
        while pictures() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert pictures() == []
    import app
    assert app.cache_seconds() == 600                                # the default: ten minutes of pictures


def test_the_cleaner_deletes_only_old_files_of_its_own_and_forgets_them(tiny_root, tmp_path, monkeypatch):
    import app
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    demo = app.build(tiny_root)
    cache = Path(demo.GRADIO_CACHE)
    mine = [cache / f"hash{i}" / "image.png" for i in range(3)]
    for path in mine:
        path.parent.mkdir(parents=True)
        path.write_bytes(b"png")
    other = cache / "other-app" / "image.png"                         # not in this app's record: never touched
    other.parent.mkdir()
    other.write_bytes(b"png")
    record = demo.temp_file_sets[0]
    record.update(str(p) for p in mine)
    record.add(str(cache / "gone" / "image.png"))                     # deleted by someone else: just forgotten
    assert app.clean_cache(demo, age=3600) == 1 and all(p.is_file() for p in mine)   # only the vanished one
    assert app.clean_cache(demo, age=0) == 3
    assert not any(p.exists() or p.parent.exists() for p in mine) and other.is_file()
    assert not record & {str(p) for p in mine} and str(cache / "gone" / "image.png") not in record


def test_a_preview_not_looked_at_is_never_decoded(pipes, monkeypatch):
    pipe = pipes("tiny-raster")
    calls = []
    decode = pipe.tokenizer.decode_progress
    monkeypatch.setattr(pipe.tokenizer, "decode_progress", lambda *a: calls.append(1) or decode(*a))
    frames = list(pipe.stream(**{"class": pipe.classes[0]}, seed=0, preview_every=1))
    assert len(frames) == 64 and calls == []
    image = frames[-1].image
    assert calls == [1] and frames[-1].image is image                   # decoded once, when read
    assert torch.equal(image, pipe(**{"class": pipe.classes[0]}, seed=0).image)


def test_text_model_shows_its_prompt_and_examples(tiny_root):
    import app
    change = app.Studio(tiny_root).on_model_change("tiny-text")
    assert change["widgets"]["prompt"]["visible"] and not change["widgets"]["class"]["visible"]
    assert "text prompts" in change["info"]
    assert change["examples"]["visible"] and change["examples"]["samples"] == [[p] for p in EXAMPLE_PROMPTS]


def test_the_button_sends_only_what_the_model_takes(tiny_root):
    import app
    studio = app.Studio(tiny_root)
    # Every widget holds a value, as on the page; those of hidden controls (steps, depth...) are left out.
    values = [{"class": "food-fruit", "prompt": "ignored", "seed": 2, "steps": 4, "depth": 2}.get(c.name)
              for c in studio.controls]
    *_, last = studio.ui_generate("tiny-raster", *values)
    assert "step 64/64" in last.stats and last.view.size == (900, 150)


@pytest.mark.parametrize("tokenizer, rows", [
    ("tiny-vq", [("reconstruction", "code indices")]),
    ("tiny-rq", [("depth 1", "code indices"), ("depth 2", "code indices"), ("depth 3", "code indices")]),
    ("tiny-kl", [("reconstruction", "token norm")]),                                # continuous: no indices
])
def test_tokenizer_lab_shows_each_level_with_psnr_and_codes(tiny_app, tokenizer, rows):
    gallery = client(tiny_app).predict(tokenizer, "upside-down face (twitter)", None, api_name="/tokenize")
    captions = [item["caption"] for item in gallery]
    assert captions[0] == "input" and len(captions) == 1 + 2 * len(rows)
    for k, (level, codes) in enumerate(rows):
        assert captions[1 + 2 * k].startswith(f"{level} · PSNR") and captions[2 + 2 * k] == f"{level} · {codes}"


def test_tokenizer_lab_shows_what_masked_quantization_keeps(tiny_app):
    gallery = client(tiny_app).predict("tiny-mqvae", "upside-down face (twitter)", None, api_name="/tokenize")
    captions = [item["caption"] for item in gallery]
    levels = [c.split(" · ")[0] for c in captions[1::2][:-1]]
    assert levels == ["mask ratio 0.75", "mask ratio 0.50", "mask ratio 0.25", "mask ratio 0.00"]
    assert captions[-1] == "importance (yellow = kept first)"
    with Image.open(gallery[-1]["image"]) as im:
        assert im.size == (256, 256)


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
    bomb = tmp_path / "bomb.png"                     # a real PNG whose header claims 100000 x 100000 pixels
    bomb.write_bytes(claimed_size_png(100_000, 100_000))
    with pytest.raises(Exception, match="image sides must be at most"):
        client(tiny_app).predict("tiny-vq", None, handle_file(str(bomb)), api_name="/tokenize")


def claimed_size_png(width: int, height: int) -> bytes:
    """A 1 x 1 PNG whose IHDR (with its checksum) is rewritten to claim width x height pixels."""
    import io
    import struct
    import zlib
    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    body = b"IHDR" + struct.pack(">II", width, height) + bytes(data[24:29])
    data[12:29] = body
    data[29:33] = struct.pack(">I", zlib.crc32(body))
    return bytes(data)


def test_text_model_takes_a_prompt_and_refuses_an_empty_one(tiny_app):
    updates = list(client(tiny_app).submit(model="tiny-text", prompt="red apple", seed=3, api_name="/generate"))
    assert "step 64/64" in updates[-1][-1]
    with pytest.raises(Exception, match="prompt must not be empty"):
        client(tiny_app).predict(model="tiny-text", prompt="   ", api_name="/generate")
    with pytest.raises(Exception, match="unknown control 'class'"):
        client(tiny_app).predict(model="tiny-text", class_name="food-fruit", api_name="/generate")


@pytest.fixture(scope="module")
def mixed_root(tiny_root, tmp_path_factory):
    """An emoji model beside a published-format one (LlamaGen at random init, 16x16 = 256 tokens)."""
    from mindmap.convert import convert
    root = tmp_path_factory.mktemp("mixed")
    shutil.copytree(tiny_root / "tiny-raster", root / "tiny-raster")
    shutil.copytree(tiny_root / "tiny-raster", root / "a-first-name")       # sorts first, still an emoji model
    arch = {"tokenizer": dict(image_size=32, block_out_channels=[32, 32], layers_per_block=1, latent_channels=32,
                              norm_num_groups=32, codebook_size=64, code_dim=8),
            "generator": dict(vocab_size=64, num_classes=10, grid=16, dim=64, n_layers=2, n_heads=4)}
    convert("llamagen", root / "aa-llamagen", random_init=True, arch=arch)
    convert("amused", root / "ab-amused", {"folder": Path(__file__).resolve().parent / "fixtures" / "amused" / "pipeline"})
    return root


def test_published_models_are_grouped_after_the_emoji_ones_and_preview_every_16_codes(mixed_root):
    import app
    studio = app.Studio(mixed_root)
    assert list(studio.models) == ["a-first-name", "tiny-raster", "aa-llamagen", "ab-amused"]
    labels = [app.model_label(n, d) for n, d in studio.models.items()]
    assert labels[0] == "emoji · a-first-name  (raster)"
    assert labels[2] == "ImageNet · aa-llamagen  (raster, random weights)"
    assert labels[3] == "text-to-image · ab-amused  (masked, text)"
    text = studio.on_model_change("ab-amused")
    assert text["widgets"]["prompt"]["info"].startswith("what to draw, in words (CLIP")
    assert text["examples"]["samples"][0] == ["a red fox sitting in the snow"]
    change = studio.on_model_change("aa-llamagen")
    assert "1000 classes" not in change["info"] and "10 classes" in change["info"] and "random weights" in change["info"]
    assert change["widgets"]["class"]["choices"][:2] == ["tench", "goldfish"]
    assert change["widgets"]["class"]["info"] == "ImageNet-1k class (type to search)"
    assert (change["widgets"]["top_k"]["value"], change["widgets"]["cfg"]["value"]) == (64, 4.0)
    updates = list(studio.api_generate("aa-llamagen", "goldfish"))
    assert len(updates) == 256 // 16                                  # 256 tokens: a preview every 16 codes
    px = studio.models["aa-llamagen"]["image_size"]                  # the picture at its own size
    assert updates[-1].image.size == (px, px) and "step 256/256" in updates[-1].stats
    assert len(list(studio.api_generate("tiny-raster", "food-fruit"))) == 64   # small grids: every code


def test_generation_runs_under_spaces_gpu_when_that_package_is_there(tiny_root, monkeypatch):
    import importlib
    import sys
    import types
    wrapped = []
    fake = types.ModuleType("spaces")
    fake.GPU = lambda fn: wrapped.append(fn.__name__) or fn
    monkeypatch.setitem(sys.modules, "spaces", fake)
    import app
    try:
        importlib.reload(app).build(tiny_root)
        assert sorted(wrapped) == ["generate", "race", "ui_generate"]
    finally:
        monkeypatch.delitem(sys.modules, "spaces")
        importlib.reload(app)
    assert app.on_gpu(len) is len                                    # without the package: a plain call


def test_mindmap_fetch_offline_logs_one_line_per_model_and_serves_the_rest(monkeypatch, caplog, tmp_path):
    import app
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("MINDMAP_MODELS", str(tmp_path))
    with caplog.at_level("WARNING", logger="mindmap.app"):
        app.fetch_published("llamagen-b-256, no-such-model")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and "c2i_B_256.pt" in lines[0] and "unknown published model 'no-such-model'" in lines[1]
    assert not any(tmp_path.iterdir())


def test_bench_app_times_what_a_person_waits_for(tiny_root, capsys):
    from mindmap.__main__ import main
    from mindmap.bench import bench_app
    temp = Path(tempfile.gettempdir())
    before = set(temp.iterdir())
    out = bench_app("tiny-raster", repeats=1, root=tiny_root, controls={"cfg": 2.0})
    assert set(temp.iterdir()) == before        # the app's pictures and the client's downloads went with them
    app = out["app"]
    assert 0 < app["first_update_ms"]["median"] <= 1000 * app["seconds"]["max"]
    assert app["seconds"]["min"] <= app["seconds"]["median"] <= app["seconds"]["max"]
    assert len(app["updates"]) == 1 and app["updates"][0] >= 1 and out["sampler_seconds"] > 0
    # one request: its ratio is its own time over the sampler's right before it. The two times are reported to 4
    # decimals and the ratio to 2, so it lies in the range of ratios those rounded times allow, give or take 0.005
    # (a fast sampler's 4th decimal moves a ratio of 22 by 0.02).
    seconds, sampler, half = app["seconds"]["median"], out["sampler_seconds"], 0.5e-4
    low, high = (seconds - half) / (sampler + half), (seconds + half) / (sampler - half)
    assert low - 0.005 <= out["app_over_sampler"] <= high + 0.005
    fetched = app["pictures_fetched"]                      # the same stream, every picture downloaded in turn
    assert 0 < fetched["first_update_ms"]["median"] <= 1000 * fetched["seconds"]["max"] and fetched["updates"][0] >= 1
    assert main(["bench", "--model", "tiny-raster", "--root", str(tiny_root), "--app", "--sweep", "cfg=2,3"]) == 2
    assert "--app measures one model" in capsys.readouterr().err


def test_race_tab_streams_the_board_and_ends_with_every_model_done(tiny_app):
    race = client(tiny_app)
    updates = list(race.submit(TINY_CLASSES[0], 1, api_name="/race"))
    image, table = updates[-1]
    assert Image.open(image).width > 136 * 5                       # every emoji class generator on the board
    rows = [line for line in table.splitlines()[2:] if line.startswith("| tiny-")]
    assert len(rows) >= 6 and all(line.endswith("| done |") for line in rows)
    assert "tiny-text" not in table
    with pytest.raises(Exception, match="class must be one of"):
        race.predict("no-such-class", 1, api_name="/race")
    with pytest.raises(Exception, match="seed must be"):
        race.predict(TINY_CLASSES[0], -1, api_name="/race")
