"""MINDmap web app: watch an autoregressive image model decode, token by token.

`python app.py` serves on 127.0.0.1:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT override it); the
models come from MINDMAP_CHECKPOINTS, else the shipped `checkpoints/` plus the published generators fetched
into MINDMAP_MODELS; the page opens on MINDMAP_MODEL, else `raster-emoji32`. MINDMAP_FETCH (comma-separated,
e.g. `llamagen-b-256`) downloads and converts published generators at start-up, on a machine with a network
(a Space sets it in its settings); nothing is downloaded otherwise. On a ZeroGPU Space generation runs
under `spaces.GPU` when that package is importable. This file is UI only: the pipeline validates every
control and does all the sampling.

API (the same whatever checkpoints are installed; the parameters are the paradigms' control catalog):
- `/generate(model, class_name, prompt, seed, <every sampling control>)`: every argument but `model` may
  be left out (None = the model's default); one the model does not take is an error naming it. Streams
  (image, decoding order, confidence, paradigm view or None, stats line) as the model decodes: the first
  preview at once, then at most one per MINDMAP_PREVIEW_INTERVAL seconds (default 0.25; 0 = every step),
  and always the final picture. The pictures sent are deleted from Gradio's cache after MINDMAP_CACHE_SECONDS
  (default 600), so a long-running app's disk stays bounded. Work is bounded per request: one whose controls are
  measured to cost more than MINDMAP_REQUEST_SECONDS (default 20) of decoding on this machine is refused, naming
  the controls that make it long, and one that overruns stops there with its partial picture (`WorkBudget`).
- `/models()`: every installed model with its paradigm and its controls (type, range, default).
- `/classes(model)`: a class model's class names.
- `/race(class_name, seed, style)`: the Race tab: streams (board, table) as every embedded class generator decodes the
  class at the seed (in the style, "any" or None for none, where a model has a style condition), taking turns on
  one clock (`mindmap.race`); at most RACE_FPS boards a second.
- `/tokenize(tokenizer, sample, upload)`: the tokenizer lab's gallery.
"""
from __future__ import annotations

import inspect
import logging
import math
import os
import secrets
import threading
import time
from pathlib import Path
from typing import NamedTuple

import gradio as gr

import torch.nn.functional as F

from mindmap.checkpoint import CheckpointError, default_root
from mindmap.controls import ANY_STYLE, SAMPLER_ROLES, api_name
from mindmap.data.samples import load_samples, load_user_image
from mindmap.eval.metrics import psnr
from mindmap.frames import decided_cells, to_pil
from mindmap.paradigms import catalog, get
from mindmap.race import Board, race
from mindmap.registry import list_models, list_tokenizers, load_pipeline, load_tokenizer
from mindmap.serve import cleaner_period
from mindmap.viz import confidence_map, importance_map, order_map, token_map

logger = logging.getLogger("mindmap.app")

try:  # a ZeroGPU Space lends the GPU per call to the functions wrapped by spaces.GPU; elsewhere a plain call
    import spaces
    on_gpu = spaces.GPU
except ImportError:
    def on_gpu(fn):
        return fn

PREVIEW_ALL_CELLS = 64             # grids up to this many cells preview every step
PREVIEW_INTERVAL = 0.25            # seconds between previews sent (MINDMAP_PREVIEW_INTERVAL; 0 = every one)
RACE_FPS = 10                      # the most race boards sent per second, whatever the preview interval
REQUEST_SECONDS = 20.0             # the work one request may cost (MINDMAP_REQUEST_SECONDS): see WorkBudget
PROBE_SECONDS = 0.5                # a request whose cost is not known yet is timed this long, then estimated
CACHE_SECONDS = 600                # pictures sent are deleted from Gradio's cache after this (MINDMAP_CACHE_SECONDS)
MIN_PX = 256                       # shown images are upscaled (nearest) to at least this size
NOT_IN_UI = {"batch"}              # bounded work: one image per request
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
.pixelated img { image-rendering: pixelated; width: 100%; height: 100%; object-fit: contain; }
.legend p { font-size: 0.85em; opacity: 0.8; margin: 0; text-align: center; }
#stats { padding: 8px 12px; border-radius: 8px; background: var(--block-background-fill); }
#stats p { font-variant-numeric: tabular-nums; margin: 0; }
.info p { font-size: 0.9em; opacity: 0.85; }
"""


def env_seconds(name: str, default: float, low: float, high: float) -> float:
    """A number of seconds from the environment variable `name`, in [low, high]; `default` (with a warning) when
    it is unset or not such a number."""
    raw = os.environ.get(name, "")
    try:
        value = float(raw) if raw else default
    except ValueError:
        value = float("nan")
    if not low <= value <= high:
        logger.warning("%s=%r is not a number of seconds in [%s, %s]; using %s", name, raw, low, high, default)
        return default
    return value


def preview_interval() -> float:
    """The least time between two previews sent to the page (the final picture is always sent)."""
    return env_seconds("MINDMAP_PREVIEW_INTERVAL", PREVIEW_INTERVAL, 0, 60)


def request_limit() -> float:
    """The most seconds of decoding one request may cost (MINDMAP_REQUEST_SECONDS, default 20 s)."""
    return env_seconds("MINDMAP_REQUEST_SECONDS", REQUEST_SECONDS, 0.01, 3600)


class WorkBudget:
    """Bounded work per request, estimated from its controls before the work is done.

    A request's cost is its planned steps (a Frame's `total`: network calls for most paradigms) times the seconds
    one step costs on this machine at the same cost-bearing controls (model, batch, every sampler control; not the
    seed, class or prompt). That per-step cost is measured: by every request that ran, and for controls never run
    before by the request itself, timed for PROBE_SECONDS. A request estimated over the limit is refused (before
    any work once its controls' cost is known; after the probe otherwise), naming the controls that make it long;
    one that overruns its estimate still stops at the limit with its partial picture. Memory is bounded: the most
    recent `size` cost keys are kept.
    """

    def __init__(self, size: int = 1024):
        self.size, self.per_step = size, {}

    @staticmethod
    def cost_controls(request) -> dict:
        """The request's controls that bear on its cost: all but its condition (class or prompt) and its seed."""
        return {k: v for k, v in request.values.items() if request.roles[k] != "condition" and k != "seed"}

    @staticmethod
    def key(model: str, request) -> tuple:
        return (model, *sorted(WorkBudget.cost_controls(request).items()))

    def record(self, key: tuple, per_step: float, total: int):
        """Seconds per step measured at `key`'s controls, and the steps such a request plans."""
        self.per_step.pop(key, None)
        self.per_step[key] = (per_step, total)             # insertion order = recency
        while len(self.per_step) > self.size:
            del self.per_step[next(iter(self.per_step))]

    def estimate(self, key: tuple) -> tuple[float, int] | None:
        """(seconds the whole request should take, its steps); None: never measured at these controls."""
        known = self.per_step.get(key)
        return None if known is None else (known[0] * known[1], known[1])

    @staticmethod
    def refusal(seconds: float, total: int, limit: float, request, defaults: dict) -> str:
        changed = [f"{k}={v} (default {defaults[k]})" for k, v in WorkBudget.cost_controls(request).items()
                   if k in defaults and v != defaults[k]]
        why = (f"the controls changed from the model's defaults: {', '.join(changed)}" if changed else
               "at its default controls this model takes longer than that on this machine")
        return (f"this request would take about {seconds:.0f} s here ({total} steps at {seconds / total:.3g} s each, "
                f"measured), over this app's limit of {limit:g} s per request (MINDMAP_REQUEST_SECONDS); {why}")


def cache_seconds() -> float:
    """How long a picture sent stays in Gradio's temp folder (MINDMAP_CACHE_SECONDS, default 600)."""
    return env_seconds("MINDMAP_CACHE_SECONDS", CACHE_SECONDS, 1, 86400)


def clean_cache(demo: gr.Blocks, age: float) -> int:
    """Delete the files this app wrote into Gradio's temp folder (the pictures it sent, the uploads it took) more
    than `age` seconds ago, their emptied folders, and Gradio's record of them; the number deleted.

    Gradio's own `delete_cache` does this on a schedule but iterates its live record while request threads add to
    it; under load it stopped deleting (a 1000-request soak kept every picture: +1,400 files per 100 requests).
    Here the record is read as a snapshot and pruned in one call, so requests may add to it meanwhile. Left: Gradio
    re-uses a picture by its content hash, so one unused for longer than `age` and handed out again during a pass
    can be deleted as it goes (seen once, at a 3 s lifetime; at the default 600 s it needs a picture unused for ten
    minutes re-used within the pass's few milliseconds)."""
    cache, now, deleted = Path(demo.GRADIO_CACHE).resolve(), time.time(), 0
    for record in demo.temp_file_sets:
        gone = set()
        for name in list(record):                   # a snapshot: request threads add to the record meanwhile
            path = Path(name)
            try:
                if now - path.lstat().st_ctime <= age:
                    continue
                path.unlink()
            except FileNotFoundError:
                pass
            gone.add(name)
            try:                                     # Gradio keeps each file in a folder named by its hash
                if path.parent.resolve() != cache and cache in path.parent.resolve().parents:
                    path.parent.rmdir()
            except OSError:                          # not empty, or gone
                pass
        record.difference_update(gone)
        deleted += len(gone)
    return deleted


def start_cache_cleaner(demo: gr.Blocks) -> threading.Thread:
    """A daemon thread running `clean_cache` every `cleaner_period`: the app's disk stays bounded by the pictures of
    the last MINDMAP_CACHE_SECONDS."""
    age = cache_seconds()

    def loop():
        while True:
            time.sleep(cleaner_period(age))
            try:
                clean_cache(demo, age)
            except Exception:                        # never let the cleaner die: log and go on
                logger.exception("cleaning the picture cache failed")
    thread = threading.Thread(target=loop, name="mindmap-cache-cleaner", daemon=True)
    thread.start()
    return thread


def refuse(message: str) -> gr.Error:
    """A refused request: one log line, and the message for the page or the API client (no server traceback)."""
    logger.info("refused request: %s", message)
    return gr.Error(message, print_exception=False)


class Outputs(NamedTuple):
    """What /generate streams, by name; the same order for the components and for each update's values."""
    image: object
    order: object
    confidence: object
    view: object
    stats: object


def load_models(root: Path | None) -> dict[str, dict]:
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
        except (OSError, CheckpointError) as e:
            logger.warning("skipping %s: %s", entry.name, e)
    return models


def safe_tokenizers(root: Path) -> list[str]:
    try:
        return list_tokenizers(root)
    except (OSError, CheckpointError) as e:
        logger.warning("cannot list tokenizers in %s: %s", root, e)
        return []


def stats_line(frame) -> str:
    rate = decided_cells(frame) / frame.elapsed if frame.elapsed > 0 else 0.0
    return (f"**step {frame.step}/{frame.total}** · {frame.network_calls} network calls · "
            f"{frame.elapsed:.2f} s · {rate:.{1 if rate < 10 else 0}f} tokens/s")


def render(frame, view) -> Outputs:
    """One streamed Frame as the page shows it; `view` is the paradigm's own picture (None: it has none). The
    picture goes at its own size and the maps one pixel per cell: the browser scales them up, pixelated."""
    g = frame.order.shape[-1]
    return Outputs(frame.pil(0), order_map(frame, 0, g), confidence_map(frame, 0, g),
                   view.render(frame, 0, None) if view else None, stats_line(frame))


class Studio:
    """The app's state and handlers: the models and tokenizers under one checkpoints root."""

    def __init__(self, root: Path | None = None):
        # root None: the shipped checkpoints and the fetched published models (`registry.model_roots`)
        self.search = Path(root) if root else None
        self.root = self.search or default_root()
        self.models = dict(sorted(load_models(self.search).items(), key=lambda m: m[1]["group"] != "emoji"))
        self.tokenizers = safe_tokenizers(self.root)
        self.samples = load_samples(32)
        # One widget (and one API parameter) per control in the catalog: fixed by the code, not the checkpoints.
        self.controls = [c for c in catalog() if c.name not in NOT_IN_UI]
        self.budget = WorkBudget()

    def default_model(self) -> str | None:
        """MINDMAP_MODEL, else the raster foundation model, else the first found."""
        return next((n for n in (os.environ.get("MINDMAP_MODEL"), "raster-emoji32") if n in self.models),
                    next(iter(self.models), None))

    def takes(self, name: str | None) -> dict:
        """A model's controls, name -> describe() (empty for no model)."""
        return self.models.get(name, {}).get("controls", {})

    def model_info(self, name: str | None) -> str:
        d = self.models.get(name)
        if d is None:
            return ""
        n_classes = len(d["controls"].get("class", {}).get("choices", []))
        return (f"paradigm **{d['paradigm']}** · {d['image_size']} px · {d['grid']}×{d['grid']} tokens"
                + (f" · {n_classes} classes" if n_classes else " · text prompts")
                + (" · **random weights**: the published architecture, for speed; its pictures are noise"
                   if d.get("random_init") else ""))

    def view_label(self, name: str | None) -> str:
        """The caption of the picture particular to the model's paradigm ("" where it has none)."""
        d = self.models.get(name)
        view = get(d["paradigm"]).view if d else None
        return view.label if view else ""

    def check_model(self, model) -> dict:
        if not isinstance(model, str) or model not in self.models:
            raise refuse(f"model must be one of: {', '.join(self.models) or 'none found'}; got {model!r}")
        return self.models[model]

    def classes(self, model: str) -> list[str]:
        """The class names a model is conditioned on."""
        return list(self.check_model(model)["controls"].get("class", {}).get("choices", []))

    def random_seed(self, name: str | None) -> int:
        """A fresh seed for the seed box (a UI convenience, not a sampling draw)."""
        spec = self.takes(name).get("seed", {"max": 2**31 - 1})
        return secrets.randbelow(int(spec["max"]) + 1)

    def generate(self, model, values: dict):
        """Stream the rendered Frames of `model` at `values` (control name -> value; absent = the model's default)."""
        self.check_model(model)
        try:
            pipe = load_pipeline(model, self.search)
            request = pipe.controls(**values)
            # Bounded work: refused before any work when these controls are known to cost more than the limit, else
            # after a short probe; a run overrunning its estimate stops at the limit with its partial picture.
            limit, key = request_limit(), WorkBudget.key(model, request)
            probe = min(PROBE_SECONDS, limit / 4)
            self.check_budget(key, limit, request)
            # Every step on the small grids; the paradigm's cadence on large ones (a 256-token raster run
            # previews every 16 codes: decoding a 256 px picture costs more than a step of the model).
            every = 1 if pipe.cells <= PREVIEW_ALL_CELLS else None
            # A bounded frame rate: the first preview at once, then at most one per interval after the last one
            # shown, and always the final picture. A preview skipped is never decoded (its Frame is lazy).
            interval, shown, probed, first = preview_interval(), None, False, None
            start, busy = time.perf_counter(), 0.0   # busy: the sampler's own time, not the page's while it waits
            stream = pipe.stream(preview_every=every, **values)
            while True:
                t = time.perf_counter()
                frame = next(stream, None)
                busy += time.perf_counter() - t
                if frame is None:
                    break
                if frame.done:
                    self.budget.record(key, busy / frame.total, frame.total)
                elif first is None:                    # one-off costs (a prompt encoded, a prefill) end here
                    first = (frame.step, busy)
                elif not probed and busy - first[1] >= probe:   # a first measure of these controls' cost
                    per_step = (busy - first[1]) / (frame.step - first[0])
                    self.budget.record(key, (first[1] + per_step * (frame.total - first[0])) / frame.total,
                                       frame.total)
                    self.check_budget(key, limit, request)
                    probed = True
                if not frame.done and time.perf_counter() - start > limit:
                    out = render(frame, pipe.paradigm.view)
                    yield out._replace(stats=f"{out.stats} · **stopped**: over this app's limit of {limit:g} s "
                                             "per request (fewer steps finish sooner)")
                    logger.info("stopped request over %g s: %s %s", limit, model, values)
                    return
                if frame.done or shown is None or time.perf_counter() - shown >= interval:
                    yield render(frame, pipe.paradigm.view)
                    shown = time.perf_counter()
        except (ValueError, CheckpointError) as e:  # a bad control or a broken checkpoint: say which
            raise refuse(str(e)) from None
        except Exception as e:                      # a fault of ours: the traceback logged once, a readable error
            logger.exception("request failed: %s", model)
            raise gr.Error(f"generation failed ({type(e).__name__}: {e})", print_exception=False) from None

    def racers(self) -> list[str]:
        """The embedded class generators, which share their classes: the Race tab's entrants."""
        return [n for n, d in self.models.items() if d["conditioning"] == "class" and d["group"] == "emoji"]

    def race_styles(self) -> list[str]:
        """The styles some entrant takes as a condition, after 'any'."""
        takes = [self.takes(n).get("style", {}).get("choices", []) for n in self.racers()]
        return list(dict.fromkeys([ANY_STYLE, *(s for choices in takes for s in choices)]))

    def race(self, class_name, seed, style=None):
        """Stream the race board (`mindmap.race`): `class_name` at `seed` (in `style` for the models with a style
        condition) in every entrant at once, on one clock, then a table of each model's network calls and
        milliseconds. Bounded like /generate: stopped, with the board so far, past MINDMAP_REQUEST_SECONDS."""
        names = self.racers()
        if not names:
            raise refuse("no class generator is installed to race")
        try:                                        # the class and seed are checked by the pipelines, up front
            pipes = {name: load_pipeline(name, self.search) for name in names}
            # At most one board per preview interval, and never more than RACE_FPS a second: a board is every
            # model's picture, and a race's laps come faster than a page can show them.
            board, limit, interval = Board(names), request_limit(), max(preview_interval(), 1 / RACE_FPS)
            start, shown = time.perf_counter(), None
            for lap in race(pipes, class_name, seed, None if style in (None, "", ANY_STYLE) else style):
                board.update(lap)
                if time.perf_counter() - start > limit:
                    yield board.image(), race_table(board) + f"\n\n**stopped**: over this app's limit of {limit:g} s"
                    logger.info("stopped race over %g s: %s %s", limit, class_name, seed)
                    return
                if shown is None or time.perf_counter() - shown >= interval:
                    yield board.image(), race_table(board)
                    shown = time.perf_counter()
            yield board.image(), race_table(board)
        except (ValueError, CheckpointError) as e:
            raise refuse(str(e)) from None

    def check_budget(self, key: tuple, limit: float, request):
        """Refuse (ValueError) a request whose measured cost at these controls is over `limit` seconds."""
        known = self.budget.estimate(key)
        if known and known[0] > limit:
            defaults = {k: spec["default"] for k, spec in self.takes(key[0]).items()}
            raise ValueError(WorkBudget.refusal(*known, limit, request, defaults))

    def ui_generate(self, model, *widget_values):
        """The Generate button: the widgets of the controls this model takes (the others are hidden)."""
        takes = self.check_model(model)["controls"]
        values = {c.name: v for c, v in zip(self.controls, widget_values) if c.name in takes}
        yield from self.generate(model, values)

    def api_generate(self, model, *values):
        """/generate: `values` in catalog order; each given (not None) goes to the model, which refuses one it
        does not take."""
        given = {c.name: v for c, v in zip(self.controls, values) if v is not None}
        yield from self.generate(model, given)

    def api_signature(self) -> inspect.Signature:
        """/generate's parameters: `model`, then one per catalog control (None = the model's default)."""
        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
        return inspect.Signature([inspect.Parameter("model", kind)] +
                                 [inspect.Parameter(api_name(c.name), kind, default=None) for c in self.controls])

    # --- widgets ----------------------------------------------------------------------------------
    @staticmethod
    def widget_props(spec: dict | None) -> dict:
        """Constructor / update arguments of a control's widget from its spec; hidden when the model has none."""
        if spec is None:
            return {"visible": False}
        props = {"visible": True, "value": spec["default"], "info": spec.get("help") or None}
        if spec["type"] == "choice":
            return props | {"choices": spec["choices"]}
        if spec["type"] == "text":
            return props | {"max_length": spec["max_length"]}
        return props | {"minimum": spec["min"], "maximum": spec["max"]}

    def make_widget(self, control, first: str | None):
        """The widget of a control, shaped by the first model that takes it; hidden if `first` does not."""
        spec = self.takes(first).get(control.name)
        shape = spec or next((d["controls"][control.name] for d in self.models.values()
                              if control.name in d["controls"]), None)
        props = self.widget_props(shape) | ({} if spec else {"visible": False})
        if control.kind == "choice":
            return gr.Dropdown(label=control.label, filterable=True, **props)
        if control.kind == "text":
            return gr.Textbox(label=control.label, lines=1, placeholder="e.g. red apple", **props)
        if control.name == "seed":
            return gr.Number(label=control.label, precision=0, scale=4, **props)
        return gr.Slider(label=control.label, step=1 if control.kind == "int" else 0.01,
                         **{"minimum": 0, "maximum": 1, **props})

    def on_model_change(self, name: str | None) -> dict:
        """What changes on the page with the model, by part: info, each control's widget (by control name; shown,
        re-ranged and reset to the model's default, or hidden), the seed dice, the view (shown, captioned), the
        example prompts."""
        takes = self.takes(name)
        prompts = self.models.get(name, {}).get("examples", [])
        return {"info": self.model_info(name),
                "widgets": {c.name: gr.update(**self.widget_props(takes.get(c.name))) for c in self.controls},
                "dice": gr.update(visible="seed" in takes),
                "view": gr.update(visible=bool(self.view_label(name)), label=self.view_label(name) or "Paradigm view",
                                  value=None),
                "examples": gr.update(samples=[[p] for p in prompts], visible=bool(prompts))}

    # --- tokenizer lab ----------------------------------------------------------------------------
    def tokenize(self, tokenizer: str, sample: str | None, upload: str | None):
        """Tokenizer lab: the picture, then for each level (depth, ...) its reconstruction with PSNR and its codes."""
        if not isinstance(tokenizer, str) or tokenizer not in self.tokenizers:
            raise refuse(f"tokenizer must be one of: {', '.join(self.tokenizers) or 'none found'}; got {tokenizer!r}")
        try:
            tok = load_tokenizer(tokenizer, self.root)
            size = tok.image_size
            if upload:
                image = load_user_image(upload, size)
            elif isinstance(sample, str) and sample in self.samples:
                image = F.interpolate(self.samples[sample][None], size=(size, size), mode="bilinear")[0]
            else:
                raise ValueError(f"sample must be one of the {len(self.samples)} held-out emoji, or upload a "
                                 f"picture; got {sample!r}")
        except (ValueError, CheckpointError) as e:
            raise refuse(str(e)) from None
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
            items.append((importance_map(tok.importance(image[None])[0], size * scale),
                          "importance (yellow = kept first)"))
        return items


def view(label: str, elem_id: str, buttons: list | None = None, legend: str | None = None) -> gr.Image:
    """One output picture (crisp pixels), with its colour legend underneath."""
    with gr.Column(min_width=200):
        img = gr.Image(label=label, format="png", height=300, interactive=False, elem_id=elem_id,
                       elem_classes="pixelated", buttons=buttons or [])
        if legend:
            gr.Markdown(legend, elem_classes="legend")
    return img


def model_label(name: str, d: dict) -> str:
    """The model dropdown's entry: its group, its name, its paradigm (and text or random weights)."""
    notes = [d["paradigm"]] + (["text"] if d["conditioning"] == "text" else []) + (
        ["random weights"] if d.get("random_init") else [])
    group = ("emoji" if d.get("group", "emoji") == "emoji" else
             "text-to-image" if d["conditioning"] == "text" else "ImageNet")
    return f"{group} · {name}  ({', '.join(notes)})"


def generate_tab(demo: gr.Blocks, studio: Studio, first: str | None):
    gr.Markdown(f"### No model found\nThere is no generator checkpoint under `{studio.root}`. Train one "
                "(`python -m mindmap train ...`) or point `MINDMAP_CHECKPOINTS` at a folder of models.",
                visible=not studio.models)
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=330):
            model = gr.Dropdown([(model_label(n, d), n) for n, d in studio.models.items()], value=first,
                                label="Model (embedded emoji models, then published generators)",
                                interactive=bool(studio.models))
            info = gr.Markdown(studio.model_info(first), elem_classes="info")
            widgets = {c: studio.make_widget(c, first) for c in studio.controls if c.role == "condition"}
            prompt = next(w for c, w in widgets.items() if c.name == "prompt")
            prompts = studio.models.get(first, {}).get("examples", [])
            examples = gr.Dataset(components=[prompt], label="Example prompts",
                                  samples=[[p] for p in prompts], visible=bool(prompts))
            with gr.Row(equal_height=True):
                seed_control = next(c for c in studio.controls if c.name == "seed")
                widgets[seed_control] = seed = studio.make_widget(seed_control, first)
                dice = gr.Button("Random", size="sm", scale=1, min_width=80, visible="seed" in studio.takes(first))
            with gr.Row():
                run = gr.Button("Generate", variant="primary", scale=2, min_width=100, interactive=bool(studio.models))
                stop = gr.Button("Stop", variant="stop", scale=1, min_width=80)
            with gr.Group():
                for c in studio.controls:
                    if c.role in SAMPLER_ROLES:
                        widgets[c] = studio.make_widget(c, first)
        with gr.Column(scale=3):
            with gr.Row():
                image = view("Image", "decoded", ["download"], legend="grey = not decided yet")
                order = view("Decoding order", "order", legend="dark = decided early, yellow = late")
                conf = view("Confidence", "confidence", legend="dark = low probability, yellow = high")
            # Its label is the paradigm's caption, set when the page loads: the API's outputs keep one label.
            paradigm_view = gr.Image(label="Paradigm view", format="png", height=190, interactive=False,
                                     elem_id="paradigm-view", buttons=[], visible=bool(studio.view_label(first)))
            stats = gr.Markdown("Pick a class and press **Generate**.", elem_id="stats", label="Stats")
            gr.Markdown(HOW_TO_READ, elem_classes="info")
    outputs = Outputs(image, order, conf, paradigm_view, stats)
    ordered = [widgets[c] for c in studio.controls]

    parts = {"info": info, "dice": dice, "view": paradigm_view, "examples": examples}

    def on_model_change(name):
        change = studio.on_model_change(name)
        return {**{widgets[c]: change["widgets"][c.name] for c in studio.controls},
                **{component: change[part] for part, component in parts.items()}}

    model.change(on_model_change, model, [*parts.values(), *ordered], api_visibility="private")
    demo.load(on_model_change, model, [*parts.values(), *ordered], api_visibility="private")
    examples.click(lambda sample: sample[0], examples, prompt, api_visibility="private")
    dice.click(studio.random_seed, model, seed, api_visibility="private")
    # One concurrency group for the button and the API: a model's KV cache serves one run at a time.
    # preprocess=False: raw values go to the pipeline, whose errors name the control at fault.
    event = run.click(on_gpu(studio.ui_generate), [model, *ordered], list(outputs), preprocess=False,
                      concurrency_limit=1, concurrency_id="generate", api_visibility="private")
    stop.click(None, cancels=[event])
    # /generate: hidden inputs named after the catalog's controls, so its signature never depends on the models.
    with gr.Column(visible=False):
        api_model = gr.Textbox(value=None, label="model")
        api_inputs = [gr.Textbox(value=None, label=api_name(c.name)) if c.kind in ("choice", "text")
                      else gr.Number(value=None, label=api_name(c.name)) for c in studio.controls]
        api_trigger = gr.Button("generate")

    def generate(model, *values):
        """Stream (image, decoding order, confidence, paradigm view or None, stats) after every step; every control
        is optional (None = the model's default) and one the model does not take is an error naming it."""
        yield from studio.api_generate(model, *values)

    generate.__signature__ = studio.api_signature()
    api_trigger.click(on_gpu(generate), [api_model, *api_inputs], list(outputs), api_name="generate", preprocess=False,
                      concurrency_limit=1, concurrency_id="generate")


def lab_tab(studio: Studio):
    gr.Markdown("Pick a tokenizer and a held-out emoji (never seen in training), or upload a picture: see what "
                "the generators actually model, the grid of code indices (one colour per code), and how well the "
                "codes rebuild the picture at each level.", elem_classes="info")
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=330):
            tokenizer = gr.Dropdown(studio.tokenizers, value=next(iter(studio.tokenizers), None), label="Tokenizer")
            sample = gr.Dropdown(list(studio.samples), value=next(iter(studio.samples), None), label="Held-out emoji",
                                 filterable=True)
            # A File input: the upload reaches `load_user_image`, whose errors say what is wrong with it.
            upload = gr.File(label="...or upload a picture (PNG, JPEG, WebP, GIF, BMP; centre-cropped, resized)",
                             file_types=[".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp"], type="filepath",
                             height=120)
            go = gr.Button("Tokenize", variant="primary")
        with gr.Column(scale=3):
            gallery = gr.Gallery(label="Input, then reconstruction and codes per level", columns=4, height=620,
                                 object_fit="contain", elem_classes="pixelated")
    go.click(studio.tokenize, [tokenizer, sample, upload], gallery, api_name="tokenize")


def race_table(board: Board) -> str:
    """The race so far, fastest finisher first: each model's network calls and sampler milliseconds."""
    rows = sorted(board.results(), key=lambda r: (not r["done"], r["ms"]))
    return "| model | network calls | ms (its own sampler) | |\n|---|---|---|---|\n" + "\n".join(
        f"| {r['model']} | {r['network_calls']} | {r['ms']:.0f} | {'done' if r['done'] else 'decoding'} |"
        for r in rows)


def race_tab(studio: Studio):
    names = studio.racers()
    classes = studio.classes(names[0]) if names else []
    gr.Markdown("One class and seed, decoded by every emoji class generator at once. The models take turns on "
                "one clock: the one that has spent the least time in its own sampler goes next, so each panel is "
                "where its model would be had it run alone for that long.", elem_classes="info")
    with gr.Row():
        class_name = gr.Dropdown(classes, value=next(iter(classes), None), label="Class", filterable=True)
        styles = studio.race_styles()
        style = gr.Dropdown(styles, value=ANY_STYLE, label="Style", visible=len(styles) > 1,
                            info="for the models with a style condition; the others draw as trained")
        seed = gr.Number(value=0, precision=0, minimum=0, maximum=2**31 - 1, label="Seed")
        go = gr.Button("Race", variant="primary", interactive=bool(names))
    board = gr.Image(label="The race", format="png", interactive=False, buttons=["download"], elem_id="race")
    table = gr.Markdown(elem_id="race-table")
    # The generate group: the entrants' KV caches serve one run at a time. Raw values: the pipeline names a bad one.
    go.click(on_gpu(studio.race), [class_name, seed, style], [board, table], api_name="race", preprocess=False,
             concurrency_limit=1, concurrency_id="generate")


def fetch_published(names: str | None):
    """Download and convert the published generators MINDMAP_FETCH names (once: they are cached); one that cannot
    be fetched (offline, unknown name) is logged in one line and left out."""
    from mindmap.hub import FetchError, fetch
    for name in filter(None, (n.strip() for n in (names or "").split(","))):
        try:
            logger.info("published model %s: %s", name, fetch(name))
        except (FetchError, ValueError, OSError) as e:
            logger.warning("not offering %s: %s", name, e)


def build(root: Path | None = None) -> gr.Blocks:
    """The page for the models under `root` (default: MINDMAP_CHECKPOINTS, else the shipped checkpoints and the
    fetched published generators)."""
    fetch_published(os.environ.get("MINDMAP_FETCH"))
    env_root = os.environ.get("MINDMAP_CHECKPOINTS")
    studio = Studio(root or (Path(env_root) if env_root else None))
    logger.info("checkpoints root %s: %s", studio.root, ", ".join(studio.models) or "no models")

    def models() -> list[dict]:
        """Every installed model with its paradigm and its controls (type, range, default, help)."""
        return list(studio.models.values())

    def classes(model: str) -> list[str]:
        """The class names a model is conditioned on."""
        return studio.classes(model)

    # delete_cache: Gradio deletes what is left when the server stops (the cleaner keeps it bounded meanwhile)
    age = int(cache_seconds())
    with gr.Blocks(title="MINDmap", analytics_enabled=False, delete_cache=(age, age)) as demo:
        gr.Markdown(f"# MINDmap\n{INTRO}")
        with gr.Tab("Generate"):
            generate_tab(demo, studio, studio.default_model())
        with gr.Tab("Race"):
            race_tab(studio)
        with gr.Tab("Tokenizer lab"):
            lab_tab(studio)
        gr.api(models, api_name="models")
        gr.api(classes, api_name="classes")
    demo.studio = studio
    return demo


def main():
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    demo = build()
    start_cache_cleaner(demo)
    demo.queue(max_size=20, default_concurrency_limit=2)
    theme = gr.themes.Soft(primary_hue="indigo", font=["ui-sans-serif", "system-ui", "sans-serif"],
                           font_mono=["ui-monospace", "monospace"])
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")), theme=theme, css=CSS)


if __name__ == "__main__":
    main()
