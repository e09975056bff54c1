"""MINDmap web app: watch an autoregressive image model decode, token by token.

`python app.py` serves on 127.0.0.1:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT override it); the
models come from MINDMAP_CHECKPOINTS, else the shipped `checkpoints/`; the page opens on MINDMAP_MODEL, else
`raster-emoji32`. This file is UI only: the pipeline validates every control and does all the sampling.

API: `/generate` (model, class_name, seed, cfg, temperature, top_k, top_p, then the other paradigms'
controls in sorted order: cfg_schedule, prefix, randomness, schedule, steps, ...) streams (image, order
map, confidence map, schedule plot, stats); `/classes` (model) returns the model's class names.
"""
from __future__ import annotations

import inspect
import logging
import math
import os
import secrets
from pathlib import Path

import gradio as gr

import torch.nn.functional as F

from mindmap.checkpoint import CheckpointError, default_root
from mindmap.data.samples import load_samples, load_user_image
from mindmap.eval.metrics import psnr
from mindmap.frames import to_pil
from mindmap.registry import list_models, list_tokenizers, load_pipeline, load_tokenizer
from mindmap.viz import confidence_map, importance_map, order_map, paradigm_view, token_map

logger = logging.getLogger("mindmap.app")

ROOT = Path(os.environ.get("MINDMAP_CHECKPOINTS") or default_root())
MIN_PX = 256                       # shown images are upscaled (nearest) to at least this size
CORE = ("class", "seed", "cfg", "temperature", "top_k", "top_p")   # the /generate parameters, in order
NOT_IN_UI = {"batch"}              # bounded work: one image per request
LABELS = {"class": "Class", "seed": "Seed", "cfg": "Guidance (cfg)", "temperature": "Temperature",
          "top_k": "Top-k (0 = all)", "top_p": "Top-p", "steps": "Sampling steps", "schedule": "Mask schedule",
          "randomness": "Randomness (Gumbel on confidence)", "cfg_schedule": "Guidance schedule",
          "prefix": "Raster prefix (cells)", "prompt": "Prompt", "mask_ratio": "Mask ratio",
          "diffusion_steps": "Diffusion steps (per AR step)", "depth": "Code depth"}
TERSE = {"seed", "cfg", "temperature", "top_k", "top_p", "randomness"}   # the label says enough: no help line
INTRO = ("Watch an autoregressive image model decode a picture step by step: the image as it fills in, "
         "the **order** in which each cell was decided, and the model's **confidence** in every code it chose.")
HOW_TO_READ = ("**How to read it.** Each step the model picks a code for one or more cells of the token grid "
               "and the tokenizer decodes the codes chosen so far. A *raster* model decides one cell per network "
               "call, row by row; a *masked* model scores every open cell at once and commits the most confident "
               "ones, so a whole picture takes a handful of calls; the *hybrid* starts in raster order and lets the "
               "masked model finish. The order map colours every cell by the step that decided it (the schedule "
               "plot uses the same colours); the confidence map shows the probability the model gave the code it "
               "picked, so dark cells are where the picture could most easily have gone another way.")
CSS = """
.pixelated img { image-rendering: pixelated; }
.legend p { font-size: 0.85em; opacity: 0.8; margin: 0; text-align: center; }
#stats { padding: 8px 12px; border-radius: 8px; background: var(--block-background-fill); }
#stats p { font-variant-numeric: tabular-nums; margin: 0; }
.info p { font-size: 0.9em; opacity: 0.85; }
"""


def load_models(root: Path) -> dict[str, dict]:
    """name -> describe() of every generator under `root`; a broken folder is logged and skipped."""
    try:
        entries = list_models(root)
    except (OSError, CheckpointError) as e:
        logger.warning("cannot list models in %s: %s", root, e)
        return {}
    models = {}
    for entry in entries:
        try:
            models[entry.name] = entry.describe()
        except (OSError, CheckpointError, KeyError) as e:
            logger.warning("skipping %s: %s", entry.name, e)
    return models


def safe_tokenizers(root: Path) -> list[str]:
    try:
        return list_tokenizers(root)
    except (OSError, CheckpointError) as e:
        logger.warning("cannot list tokenizers in %s: %s", root, e)
        return []


MODELS = load_models(ROOT)
# The model the page opens on: MINDMAP_MODEL, else the raster foundation model, else the first found.
DEFAULT_MODEL = next((n for n in (os.environ.get("MINDMAP_MODEL"), "raster-emoji32") if n in MODELS),
                     next(iter(MODELS), None))
TOKENIZER_NAMES = safe_tokenizers(ROOT)
SAMPLES = load_samples(32)
EXTRA = sorted({c for d in MODELS.values() for c in d["controls"]} - set(CORE) - NOT_IN_UI)
ANY_SPEC = {name: spec for d in reversed(list(MODELS.values())) for name, spec in d["controls"].items()}
UI_CONTROLS = CORE + tuple(EXTRA)  # later paradigms' controls get a widget and are appended to /generate
# The picture particular to each paradigm (`viz.paradigm_view`), under the three maps.
VIEWS = {"masked": "Schedule: cells committed per step", "hybrid": "Schedule: raster prefix, then masked steps",
         "depth": "Depth strip: the picture from its first 1, 2, ... codes per cell",
         "mq": "Masked quantization: kept cells, and the importance map of the result",
         "scale": "Scale pyramid: the picture after each scale (top) and that scale's codes (bottom)",
         "mar": "Schedule: cells revealed per AR step (each drawn by the diffusion head)"}
# Where the sliders sit on the page (the /generate order above stays fixed): the paradigm's own levers first.
LAYOUT = ["depth", "mask_ratio", "prefix", "steps", "diffusion_steps", "schedule", "randomness", "cfg", "cfg_schedule",
          "temperature", "top_k", "top_p"]


def model_info(name: str | None) -> str:
    d = MODELS.get(name)
    if d is None:
        return ""
    n_classes = len(d["controls"].get("class", {}).get("choices", []))
    return (f"paradigm **{d['paradigm']}** · {d['image_size']} px · {d['grid']}×{d['grid']} tokens"
            + (f" · {n_classes} classes" if n_classes else " · text prompts"))


def widget_props(name: str, spec: dict | None) -> dict:
    """Constructor / update arguments of a control's widget; hidden when the model does not take it."""
    if spec is None:
        return {"visible": False}
    info = None if name in TERSE else spec.get("help") or None
    props = {"visible": True, "value": spec["default"], "info": info}
    if spec["type"] == "choice":
        return props | {"choices": spec["choices"]}
    if spec["type"] == "text":
        return props | {"max_length": spec["max_length"]}
    return props | {"minimum": spec["min"], "maximum": spec["max"]}


def make_widget(name: str, spec: dict | None):
    """The widget of a control; `spec` is the first model's (None: it does not take it, so hidden).

    The widget's kind and initial range come from a model that takes the control, so it is the right
    widget (a dropdown for a choice) with a valid value when another model shows it.
    """
    shape = spec or ANY_SPEC.get(name)
    props = widget_props(name, shape) | ({} if spec else {"visible": False})
    label = LABELS.get(name, name.replace("_", " ").capitalize())
    kind = shape["type"] if shape else ("choice" if name == "class" else "float")
    if kind == "choice":
        return gr.Dropdown(label=label, filterable=True, **props)
    if kind == "text":
        return gr.Textbox(label=label, lines=1, placeholder="e.g. red apple", **props)
    if name == "seed":
        return gr.Number(label=label, precision=0, scale=4, **props)
    return gr.Slider(label=label, step=1 if kind == "int" else 0.01, **{"minimum": 0, "maximum": 1, **props})


def on_model_change(name: str | None):
    controls = MODELS.get(name, {}).get("controls", {})
    updates = [gr.update(**widget_props(c, controls.get(c))) for c in UI_CONTROLS]
    examples = MODELS.get(name, {}).get("examples", [])
    return [model_info(name), *updates, gr.update(visible="seed" in controls), view_update(name),
            gr.update(samples=[[p] for p in examples], visible=bool(examples))]


def view_update(name: str | None) -> dict:
    """The paradigm view's label and visibility for a model (hidden where the paradigm has none)."""
    label = VIEWS.get(MODELS.get(name, {}).get("paradigm"))
    return gr.update(visible=label is not None, label=label or "View", value=None)


def random_seed(name: str | None) -> int:
    """A fresh seed for the seed box (a UI convenience, not a sampling draw)."""
    spec = MODELS.get(name, {}).get("controls", {}).get("seed", {"max": 2**31 - 1})
    return secrets.randbelow(int(spec["max"]) + 1)


def check_model(model) -> dict:
    if model not in MODELS:
        raise gr.Error(f"model must be one of: {', '.join(MODELS) or 'none found'}; got {model!r}")
    return MODELS[model]


def classes(model: str) -> list[str]:
    """The class names a model is conditioned on."""
    check_model(model)
    return list(MODELS[model]["controls"].get("class", {}).get("choices", []))


def stats_line(frame) -> str:
    decided = int((~frame.mask[0]).sum())
    rate = decided / frame.elapsed if frame.elapsed > 0 else 0.0
    return (f"**step {frame.step}/{frame.total}** · {frame.network_calls} network calls · "
            f"{frame.elapsed:.2f} s · {rate:.0f} tokens/s")


def render(frame):
    scale = max(1, math.ceil(MIN_PX / frame.image.shape[-1]))
    image = frame.pil(0, scale)
    px = max(image.width, MIN_PX)
    return image, order_map(frame, 0, px), confidence_map(frame, 0, px), paradigm_view(frame), stats_line(frame)


def generate(model, class_name, seed, cfg, temperature, top_k, top_p, *extra):
    """Stream (image, order map, confidence map, paradigm view or None, stats) after every step."""
    takes = check_model(model)["controls"]
    given = dict(zip(UI_CONTROLS, (class_name, seed, cfg, temperature, top_k, top_p, *extra)))
    values = {k: v for k, v in given.items() if k in takes}
    try:
        pipe = load_pipeline(model, ROOT)
        for frame in pipe.stream(preview_every=1, **values):
            yield render(frame)
    except (ValueError, CheckpointError) as e:  # a bad control or a broken checkpoint: say which
        logger.info("rejected request: %s", e)
        raise gr.Error(str(e)) from None


# /generate's parameters are named after the controls present, so API clients can pass them by keyword.
generate.__signature__ = inspect.Signature(
    [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in ("model", "class_name", *UI_CONTROLS[1:])])


def view(label: str, elem_id: str, buttons: list | None = None, legend: str | None = None) -> gr.Image:
    """One output picture (crisp pixels), with its colour legend underneath."""
    with gr.Column(min_width=200):
        img = gr.Image(label=label, format="png", height=300, interactive=False, elem_id=elem_id,
                       elem_classes="pixelated", buttons=buttons or [])
        if legend:
            gr.Markdown(legend, elem_classes="legend")
    return img


def controls_column(first: str | None):
    """Model, class, seed, Generate/Stop, then the sampling sliders; widgets in UI_CONTROLS order."""
    controls = MODELS.get(first, {}).get("controls", {})
    model = gr.Dropdown([(f"{n}  ({d['paradigm']}{', text' if d['conditioning'] == 'text' else ''})", n)
                         for n, d in MODELS.items()], value=first,
                        label="Model", interactive=bool(MODELS))
    info = gr.Markdown(model_info(first), elem_classes="info")
    widgets = {"class": make_widget("class", controls.get("class"))}
    if "prompt" in UI_CONTROLS:
        widgets["prompt"] = make_widget("prompt", controls.get("prompt"))
    examples = gr.Dataset(components=[widgets.get("prompt") or gr.Textbox(visible=False)], label="Example prompts "
                          "(held-out emoji names)", samples=[[p] for p in MODELS.get(first, {}).get("examples", [])],
                          visible=bool(MODELS.get(first, {}).get("examples")))
    with gr.Row(equal_height=True):
        widgets["seed"] = make_widget("seed", controls.get("seed"))
        dice = gr.Button("Random", size="sm", scale=1, min_width=80, visible="seed" in controls)
    with gr.Row():
        run = gr.Button("Generate", variant="primary", scale=2, min_width=100, interactive=bool(MODELS))
        stop = gr.Button("Stop", variant="stop", scale=1, min_width=80)
    with gr.Group():
        placed = [c for c in LAYOUT if c in UI_CONTROLS] + [c for c in UI_CONTROLS[2:] if c not in LAYOUT + ["prompt"]]
        for name in placed:
            widgets[name] = make_widget(name, controls.get(name))
    return model, info, [widgets[c] for c in UI_CONTROLS], dice, run, stop, examples


def outputs_column(first: str | None):
    with gr.Row():
        image = view("Image", "decoded", ["download"], legend="grey = not decided yet")
        order = view("Decoding order", "order", legend="dark = decided early, yellow = late")
        conf = view("Confidence", "confidence", legend="dark = low probability, yellow = high")
    extra = gr.Image(format="png", height=190, interactive=False, elem_id="paradigm-view", buttons=[],
                     **{k: v for k, v in view_update(first).items() if k in ("label", "visible")})
    stats = gr.Markdown("Pick a class and press **Generate**.", elem_id="stats")
    gr.Markdown(HOW_TO_READ, elem_classes="info")
    return image, order, conf, extra, stats


def tokenize(tokenizer: str, sample: str | None, upload: str | None):
    """Tokenizer lab: the picture, then for each level (depth, ...) its reconstruction with PSNR and its codes."""
    if tokenizer not in TOKENIZER_NAMES:
        raise gr.Error(f"tokenizer must be one of: {', '.join(TOKENIZER_NAMES) or 'none found'}; got {tokenizer!r}")
    try:
        tok = load_tokenizer(tokenizer, ROOT)
        size = tok.image_size
        if upload:
            image = load_user_image(upload, size)
        elif sample in SAMPLES:
            image = F.interpolate(SAMPLES[sample][None], size=(size, size), mode="bilinear")[0]
        else:
            raise ValueError(f"sample must be one of the {len(SAMPLES)} held-out emoji, or upload a picture; "
                             f"got {sample!r}")
    except (ValueError, CheckpointError) as e:
        raise gr.Error(str(e)) from None
    scale = max(1, math.ceil(MIN_PX / size))
    items = [(to_pil(image, scale), "input")]
    for label, recon, codes in tok.previews(image[None]):
        score = psnr(recon, image[None]).item()
        items.append((to_pil(recon[0], scale), f"{label} · PSNR {score:.1f} dB"))
        if codes.is_floating_point():   # continuous tokens: no indices, show each cell's token norm
            items.append((importance_map(codes[0] / codes[0].max().clamp_min(1e-8), size * scale),
                          f"{label} · token norm"))
        else:
            items.append((token_map(codes[0], tok.vocab_size, size * scale), f"{label} · code indices"))
    if hasattr(tok, "importance"):      # masked quantization: which cells the tokenizer keeps first
        items.append((importance_map(tok.importance(image[None])[0], size * scale), "importance (yellow = kept first)"))
    return items


def lab_tab():
    gr.Markdown("Pick a tokenizer and a held-out emoji (never seen in training), or upload a picture: see what "
                "the generators actually model, the grid of code indices (one colour per code), and how well the "
                "codes rebuild the picture at each level.", elem_classes="info")
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=330):
            tokenizer = gr.Dropdown(TOKENIZER_NAMES, value=next(iter(TOKENIZER_NAMES), None), label="Tokenizer")
            sample = gr.Dropdown(list(SAMPLES), value=next(iter(SAMPLES), None), label="Held-out emoji",
                                 filterable=True)
            # A File input: the upload reaches `load_user_image`, whose errors say what is wrong with it.
            upload = gr.File(label="...or upload a picture (PNG, JPEG, WebP, GIF, BMP; centre-cropped, resized)",
                             file_types=[".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp"], type="filepath",
                             height=120)
            go = gr.Button("Tokenize", variant="primary")
        with gr.Column(scale=3):
            gallery = gr.Gallery(label="Input, then reconstruction and codes per level", columns=4, height=620,
                                 object_fit="contain", elem_classes="pixelated")
    go.click(tokenize, [tokenizer, sample, upload], gallery, api_name="tokenize")


def build() -> gr.Blocks:
    first = DEFAULT_MODEL
    with gr.Blocks(title="MINDmap", analytics_enabled=False) as demo:
        gr.Markdown(f"# MINDmap\n{INTRO}")
        with gr.Tab("Generate"):
            if not MODELS:
                gr.Markdown(f"### No model found\nThere is no generator checkpoint under `{ROOT}`. Train one "
                            "(`python -m mindmap train ...`) or point `MINDMAP_CHECKPOINTS` at a folder of models.")
            with gr.Row(equal_height=False):
                with gr.Column(scale=1, min_width=330):
                    model, info, widgets, dice, run, stop, examples = controls_column(first)
                with gr.Column(scale=3):
                    outputs = outputs_column(first)
        with gr.Tab("Tokenizer lab"):
            lab_tab()
        model.change(on_model_change, model, [info, *widgets, dice, outputs[3], examples], api_visibility="private")
        if "prompt" in UI_CONTROLS:   # a click on an example fills the prompt box
            examples.click(lambda sample: sample[0], examples, widgets[UI_CONTROLS.index("prompt")],
                           api_visibility="private")
        dice.click(random_seed, model, widgets[1], api_visibility="private")
        # preprocess=False: raw values go to the pipeline, whose errors name the control at fault.
        event = run.click(generate, [model, *widgets], list(outputs), api_name="generate", preprocess=False,
                          concurrency_limit=1)  # a model's KV cache serves one run at a time
        stop.click(None, cancels=[event])
        gr.api(classes, api_name="classes")
    return demo


def main():
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logger.info("checkpoints root %s: %s", ROOT, ", ".join(MODELS) or "no models")
    demo = build()
    demo.queue(max_size=20, default_concurrency_limit=2)
    theme = gr.themes.Soft(primary_hue="indigo", font=["ui-sans-serif", "system-ui", "sans-serif"],
                           font_mono=["ui-monospace", "monospace"])
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")), theme=theme, css=CSS)


if __name__ == "__main__":
    main()
