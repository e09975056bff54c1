"""`python -m mindmap models | generate | grid | bench | eval | train | data | convert | fetch`."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .cli_controls import parse_sweep, sampling_values


def _outputs(args, *flags: str):
    """Check the output folders these flags name (set ones only) before any work: a file where a folder goes, a
    parent that is a file, a place that cannot be written."""
    from .cli_generate import check_target
    for flag in flags:
        value = getattr(args, flag.lstrip("-").replace("-", "_"), None)
        if value is not None:
            check_target(value, flag, folder=True)


def _data(args):
    _outputs(args, "--root")
    if args.dataset == "samples":
        from .data.samples import write_samples
        print(write_samples())
        return
    from .data import build_emoji
    print(build_emoji(args.root, force=args.force))


def _styles(text: str) -> list[str] | None:
    """--styles: None for all, else the comma-separated names (checked against the data by load_emoji)."""
    return None if text.strip() == "all" else [s.strip() for s in text.split(",") if s.strip()]


def _calibrate(args) -> tuple | None:
    """--calibrate SECONDS --sync DIR --sync-count K (set by `train suite`): the phase's shared step count."""
    if args.calibrate is None:
        return None
    if args.sync is None or args.sync_count is None or args.sync_count < 1 or not args.calibrate > 0:
        raise ValueError("--calibrate SECONDS (> 0) needs --sync FOLDER and --sync-count K (>= 1)")
    return args.sync, args.out.name, args.sync_count, args.calibrate


def _train(args):
    _outputs(args, "--out", "--run-dir")
    if args.what == "suite":
        from .train.suite import run_suite
        metrics = run_suite(args.out, args.run_dir or Path("runs") / "suite", tokenizer_steps=args.tokenizer_steps,
                            generator_steps=args.generator_steps, tokenizer_seconds=args.tokenizer_seconds,
                            generator_seconds=args.generator_seconds, tokenizer_batch=args.tokenizer_batch,
                            generator_batch=args.generator_batch, lr=args.lr, parallel=args.jobs,
                            features=args.features if args.features is not None else 0.5,
                            adversarial=args.adversarial if args.adversarial is not None else 0.1,
                            mixed_precision=args.mixed_precision, only=args.only, ablation=args.ablation,
                            compile=args.compile)
    elif args.what == "tokenizer":
        from .train.tokenizer import train_tokenizer
        metrics = train_tokenizer(args.out, kind=args.kind, size=args.size, steps=args.steps, batch=args.batch,
                                  lr=args.lr, codebook_size=args.codebook_size, depth=args.depth, seed=args.seed,
                                  run_dir=args.run_dir, cpu=args.cpu, mixed_precision=args.mixed_precision,
                                  styles=_styles(args.styles), features=args.features or 0.0,
                                  adversarial=args.adversarial or 0.0, gan_start=args.gan_start,
                                  calibrate=_calibrate(args))
    elif args.what == "classifier":
        from .train.classifier import train_classifier
        metrics = train_classifier(args.out, size=args.size, steps=args.steps, batch=args.batch, lr=args.lr,
                                   seed=args.seed, run_dir=args.run_dir, cpu=args.cpu,
                                   mixed_precision=args.mixed_precision, styles=_styles(args.styles))
    elif args.what == "style-head":
        from .train.classifier import fit_style_head
        metrics = fit_style_head(args.out, seed=args.seed)
    elif args.what == "hybrid":
        from .train.hybrid import compose_hybrid
        if args.raster is None or args.masked is None:
            raise ValueError("train hybrid needs --raster FOLDER and --masked FOLDER")
        metrics = compose_hybrid(args.out, raster=args.raster, masked=args.masked)
    else:
        from .train.generator import train_generator
        metrics = train_generator(args.out, tokenizer=args.tokenizer, paradigm=args.paradigm, steps=args.steps,
                                  batch=args.batch, lr=args.lr, preset=args.preset, dropout=args.dropout,
                                  flip=not args.no_flip, seed=args.seed, conditioning=args.conditioning,
                                  run_dir=args.run_dir, cpu=args.cpu, init=args.init,
                                  mixed_precision=args.mixed_precision, styles=_styles(args.styles),
                                  style_condition=not args.no_style_condition, calibrate=_calibrate(args),
                                  curve_every=args.curve_every, compile=args.compile)
    if metrics:                      # empty on the processes other than the main one
        print(json.dumps(metrics))


def _convert(args):
    from .convert import convert
    from .convert.families import get_family
    fam = get_family(args.family)
    _outputs(args, "--out")
    arch = None
    if args.arch:
        text = Path(args.arch).read_text() if args.arch.endswith(".json") else args.arch
        try:
            arch = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"--arch: not valid JSON ({e})") from None
    files = {s.flag: getattr(args, s.flag.replace("-", "_"), None) for s in fam.sources}
    out = convert(args.family, args.out, files, size=args.size, arch=arch, random_init=args.random_init,
                  seed=args.seed, force=args.force, command="python -m mindmap " + " ".join(sys.argv[1:]))
    print(out)


def _fetch(args):
    _outputs(args, "--root")
    from .hub import fetch
    print(fetch(args.name, root=args.root, force=args.force))


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line (`error: ...`, exit 2) instead of usage and then the error;
    `--help` still prints the usage."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog.removeprefix('python -m mindmap').strip() or 'mindmap'}: {message}\n")


def _models(args):
    from .registry import list_models
    models = list_models(args.root)
    if not models and args.root:
        raise ValueError(f"no models under --root {args.root}")
    if args.json:
        print(json.dumps([m.describe() for m in models], indent=2))
        return
    for m in models:
        d = m.describe()
        print(f"{d['name']:<24} {d['paradigm']:<8} {d['conditioning']:<6} " + ", ".join(d["controls"]))


def _generate(args):
    from .cli_generate import generate
    print(json.dumps(generate(args)))


def _grid(args):
    from .cli_grid import grid
    print(json.dumps(grid(args)))


def _eval(args):
    from .eval import report, run
    command = "python -m mindmap " + " ".join(sys.argv[1:])
    _check_write(args)
    if args.tokenizer:
        from .registry import list_tokenizers
        names = list_tokenizers(args.root) if args.tokenizer == "all" else [args.tokenizer]
        rows = [run.eval_tokenizer(name, args.root, _styles(args.styles)) for name in names]
        table = report.tokenizer_table(rows)
        if args.write:
            report.write_section(args.write, "TOKENIZERS", f"Measured by `{command}`:\n\n{table}")
        print(table if args.markdown else json.dumps(rows[0] if len(rows) == 1 else rows))
        return
    if args.tune and (not args.model or len({name for v in parse_sweep(args.sweep) for name in v}) != 1):
        raise ValueError("--tune needs --model NAME and one --sweep CONTROL=V1,V2,... of a single control")
    if args.all:
        rows = run.eval_all(n=args.n, seed=args.seed, root=args.root, styles=_styles(args.styles),
                            sweeps=not args.defaults_only, pattern=args.all)
    elif args.model:
        given = sampling_values(args)
        rows = [run.eval_generator(args.model, n=args.n, seed=args.seed, root=args.root, controls={**given, **v},
                                   dtype=args.dtype, styles=_styles(args.styles))
                for v in parse_sweep(args.sweep) or [{}]]
    else:
        raise ValueError("eval needs --model NAME, --tokenizer NAME|all or --all")
    table = report.generator_table(rows)
    if args.tune:
        print(json.dumps({"defaults": report.write_tuned_default(rows, next(iter(rows[0]["controls"])), command,
                                                                 args.root)}), file=sys.stderr)
    if args.write:
        partial = args.all and (args.all != "*" or args.defaults_only or _styles(args.styles) is not None)
        if not partial:   # the cards keep each model's full evaluation; a partial --all run writes the README only
            report.update_cards(rows, command, args.root)
        if args.all:
            report.write_results(args.write, rows, command, sweeps=not args.defaults_only)
    print(f"{table}\n\n{report.reference_note(rows)}" if args.markdown else
          json.dumps(rows[0] if len(rows) == 1 else rows))


def _figures(args):
    _outputs(args, "--out")
    if args.curves is not None:
        from .eval.report import plot_learning_curves
        print(json.dumps([str(plot_learning_curves(args.curves, Path(args.out) / "learning_curves.png"))]))
        return
    from .figures import make_figures
    print(json.dumps(make_figures(args.root, args.out)))


def _race(args):
    from .cli_generate import check_target, written
    from .race import entrants, race_gif
    from .registry import load_pipeline
    check_target(args.out, "--out", ".gif")
    if not 0.01 <= args.tick <= 10:
        raise ValueError(f"--tick must be a number of seconds in [0.01, 10], got {args.tick}")
    names = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else entrants(args.class_name,
                                                                                                   args.root)
    pipes = {name: load_pipeline(name, args.root) for name in names}
    with written(Path(args.out)) as tmp:
        results = race_gif(pipes, args.class_name, args.seed, tmp, tick=args.tick, style=args.style)
    print(json.dumps({"out": str(args.out), "class": args.class_name, "style": args.style, "seed": args.seed,
                      "results": results}))


def _bench(args):
    if (args.train is None) == (args.model is None):
        raise ValueError("bench needs --model NAME (sampling) or --train PARADIGM --tokenizer FOLDER (training steps)")
    if args.train is not None:
        from .bench import bench_train, train_markdown
        if args.tokenizer is None or args.sweep or args.against or args.write or args.app:
            raise ValueError("--train needs --tokenizer FOLDER and takes no --sweep, --against, --write or --app")
        out = bench_train(args.train, args.tokenizer, preset=args.preset, batch=args.batch, steps=args.train_steps,
                          mixed_precision=args.mixed_precision, compile=args.compile)
        print(train_markdown(out) if args.markdown else json.dumps(out, indent=None if args.json else 2))
        return
    if args.app:
        from .bench import app_markdown, bench_app
        if args.sweep or args.against or args.write or args.batch != 1 or args.compile:
            raise ValueError("--app measures one model at batch 1 through the app; it takes no --sweep, --against, "
                             "--write, --batch or --compile")
        out = bench_app(args.model, repeats=args.repeats, root=args.root, controls=sampling_values(args))
        print(app_markdown(out) if args.markdown else json.dumps(out, indent=None if args.json else 2))
        return
    from .bench import bench
    _check_write(args)
    against = [a.strip() for a in args.against.split(",") if a.strip()] if args.against else []
    out = bench(args.model, batch=args.batch, repeats=args.repeats, root=args.root, controls=sampling_values(args),
                sweep=parse_sweep(args.sweep), against=against, dtype=args.dtype, compile=args.compile)
    if args.markdown or args.write:
        from .bench import markdown_table
        table = markdown_table(out)
        if args.write:
            from .eval.report import write_section
            command = "python -m mindmap " + " ".join(sys.argv[1:])
            write_section(args.write, "BENCH", f"Measured by `{command}` ({out['device']}, {out['threads']} threads, "
                          f"batch {out['batch']}, median of {args.repeats} runs):\n\n{table}")
        if args.markdown:
            print(table)
            return
    print(json.dumps(out, indent=None if args.json else 2))


def _soak(args):
    from .soak import markdown, soak
    out = soak(args.requests, args.concurrency, root=args.root, seed=args.seed, cache_seconds=args.cache_seconds,
               request_seconds=args.request_seconds, log=lambda line: print(line, file=sys.stderr, flush=True))
    print(markdown(out) if args.markdown else json.dumps(out, indent=None if args.json else 2))
    return 1 if out["failed"] else 0


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The CLI. The flags built from the paradigms (their controls, names) go only to `command`'s parser: reading
    them imports every model, which `data` and a bare `--help` do not need."""
    heavy = {"train": _train_flags, "convert": _convert_flags, "generate": _sampling_flags, "grid": _sampling_flags, "eval": _sampling_flags,
             "bench": _bench_flags}
    p = OneLineParser(prog="python -m mindmap", description="MINDmap: autoregressive image generation explorer")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("data", help="build the training data (emoji), or the held-out samples shipped in assets/")
    d.add_argument("dataset", choices=["emoji", "samples"])
    d.add_argument("--root", type=Path, default=None, help="output folder (default $MINDMAP_DATA or ~/.cache/mindmap)")
    d.add_argument("--force", action="store_true", help="rebuild even if present")
    d.set_defaults(func=_data)

    t = sub.add_parser("train", help="train a tokenizer, a generator or the eval classifier; resumable")
    t.add_argument("what", choices=["tokenizer", "generator", "classifier", "hybrid", "style-head", "suite"],
                   help="style-head: fit the eval classifier's style head (in place, --out its folder); suite: every "
                        "tokenizer and class generator at equal budgets into the folder --out (resumable)")
    t.add_argument("--out", type=Path, required=True, help="checkpoint folder to write (suite: their parent)")
    t.add_argument("--size", type=int, default=32, help="image size in px (tokenizer)")
    t.add_argument("--codebook-size", type=int, default=512)
    t.add_argument("--kind", default="vq", help="tokenizer: vq, rq, mq or msvq")
    t.add_argument("--depth", type=int, default=4, help="residual codes per cell (rq tokenizer)")
    t.add_argument("--tokenizer", type=Path, help="tokenizer checkpoint folder (generator)")
    t.add_argument("--raster", type=Path, help="raster checkpoint folder (hybrid)")
    t.add_argument("--masked", type=Path, help="masked checkpoint folder (hybrid)")
    t.add_argument("--preset", default="small", help="generator size preset")
    t.add_argument("--dropout", type=float, default=0.1, help="residual dropout (generator)")
    t.add_argument("--no-flip", action="store_true", help="no horizontal-flip augmentation (generator)")
    t.add_argument("--steps", type=int, default=1500)
    t.add_argument("--batch", type=int, default=64)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--run-dir", type=Path, default=None, help="resume state (default runs/<out name>)")
    t.add_argument("--cpu", action="store_true", help="train on the CPU even if a GPU is present")
    t.add_argument("--init", type=Path, help="generator: start from this checkpoint's matching weights (fine-tune)")
    t.add_argument("--styles", default="all", help="emoji styles to train on, comma-separated, or all")
    t.add_argument("--features", type=float, default=None,
                   help="tokenizer: weight of feature matching in the eval classifier's stages (default 0: off; "
                        "suite: 0.5)")
    t.add_argument("--adversarial", type=float, default=None,
                   help="tokenizer: weight of a patch discriminator's loss, times VQGAN's adaptive weight (default 0: "
                        "off; suite: 0.1)")
    t.add_argument("--curve-every", type=int, default=0,
                   help="generator: held-out loss every N steps into heldout.csv (the learning curve; 0: off)")
    t.add_argument("--tokenizer-steps", type=int, default=3000, help="suite: steps of every tokenizer")
    t.add_argument("--generator-steps", type=int, default=1250,
                   help="suite: steps of every generator, the same for all (1250 x 256: where the raster model's "
                        "held-out loss was lowest)")
    t.add_argument("--tokenizer-seconds", type=float, help="suite: measure the tokenizers' steps to fit this time")
    t.add_argument("--generator-seconds", type=float, help="suite: measure the generators' steps to fit this time")
    t.add_argument("--tokenizer-batch", type=int, default=128, help="suite: tokenizer batch")
    t.add_argument("--generator-batch", type=int, default=256, help="suite: generator batch (every one the same)")
    t.add_argument("--jobs", type=int, default=1, help="suite: trainings run side by side")
    t.add_argument("--only", default="all", help="suite: all, tokenizers or generators")
    t.add_argument("--ablation", action="store_true",
                   help="suite: also a VQ tokenizer without the sharpening losses (vq-plain-emoji32)")
    t.add_argument("--calibrate", type=float, help=argparse.SUPPRESS)     # set by the suite for its jobs
    t.add_argument("--sync", type=Path, help=argparse.SUPPRESS)
    t.add_argument("--sync-count", type=int, help=argparse.SUPPRESS)
    t.add_argument("--gan-start", type=float, default=0.3,
                   help="tokenizer: share of the steps before the discriminator starts")
    t.add_argument("--no-style-condition", action="store_true",
                   help="generator: class only, no style condition beside it")
    t.set_defaults(func=_train)

    m = sub.add_parser("models", help="list the available models")
    m.add_argument("--json", action="store_true")
    m.add_argument("--root", type=Path, default=None, help="checkpoints folder")
    m.set_defaults(func=_models)

    g = sub.add_parser("generate", help="generate one image")
    _dtype_flag(g)
    g.add_argument("--model", required=True)
    g.add_argument("--class", dest="class_name", help="subcategory, e.g. face-smiling (class models)")
    g.add_argument("--prompt", help="what to draw, in words (text models)")
    g.add_argument("--style", help="emoji art style, beside the class (models with a style condition; "
                                   "`models --json` lists each model's)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--out", type=Path, required=True, help="PNG to write")
    g.add_argument("--frames", type=Path, help="folder for one PNG per streamed frame")
    g.add_argument("--gif", type=Path, help="animated GIF of the decoding")
    g.add_argument("--scale", type=int, default=1, help="nearest-neighbour upscale of the written PNG")
    g.add_argument("--root", type=Path, default=None, help="checkpoints folder")
    g.set_defaults(func=_generate)

    r = sub.add_parser("grid", help="a labelled grid of samples: rows = classes, columns = batch draws")
    r.add_argument("--model", required=True)
    r.add_argument("--classes", required=True, help="comma-separated subcategories")
    r.add_argument("--seeds", type=int, default=8, help="images per class (one batch)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--scale", type=int, default=3)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--root", type=Path, default=None, help="checkpoints folder")
    r.set_defaults(func=_grid)

    e = sub.add_parser("eval", help="quality: FD-emoji, class consistency, precision/recall, memorisation")
    _dtype_flag(e)
    e.add_argument("--model", help="a generator to sample and score")
    e.add_argument("--tokenizer", help="a tokenizer folder under checkpoints/ (or `all`) to score on held-out emoji")
    e.add_argument("--all", nargs="?", const="*", metavar="PATTERN", help="every generator, or those whose name "
                   "matches PATTERN (e.g. '*-arena-*')")
    e.add_argument("--defaults-only", action="store_true", help="with --all: each model at its defaults, no sweeps")
    e.add_argument("--styles", default="all", help="score against these styles' held-out emoji only (comma-"
                   "separated; a model with a style condition draws in them; a tokenizer may be scored on styles it never "
                   "learnt); default all the model learnt")
    e.add_argument("--n", type=int, default=990, help="samples, spread evenly over the classes")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--json", action="store_true", help="JSON output (the default unless --markdown)")
    e.add_argument("--markdown", action="store_true", help="a results table")
    e.add_argument("--root", type=Path, default=None, help="checkpoints folder")
    e.add_argument("--sweep", action="append", help="one row per value, e.g. steps=4,8,16 (with --model); repeat it "
                   "for more rows; `zip_window=2,4 jacobi_window=8`: every combination")
    e.add_argument("--tune", action="store_true", help="with --model and --sweep: make the value with the lowest "
                   "FD-emoji the model's default (its manifest and card say so)")
    e.add_argument("--write", type=Path, help="put the results in this README (between its markers), the model "
                   "cards and assets/quality_speed.png; a partial --all (a PATTERN, --defaults-only or --styles) leaves the "
                   "cards (and, without its sweep, the mask-ratio table) as their full evaluations wrote them")
    e.set_defaults(func=_eval)

    f = sub.add_parser("figures", help="the README's pictures: model comparison, decoding GIFs, importance maps, "
                       "prompts")
    f.add_argument("--out", type=Path, default=Path("assets"), help="folder to write")
    f.add_argument("--root", type=Path, default=None, help="checkpoints folder")
    f.add_argument("--curves", type=Path, help="only the learning curves: a folder of `heldout.csv` files (per model "
                   "folder, or <model>.csv) -> learning_curves.png")
    f.set_defaults(func=_figures)

    b = sub.add_parser("bench", help="speed: real sampler vs its naive baseline (and a sweep, other models)")
    _dtype_flag(b)
    b.add_argument("--model", help="the model to time (sampling); not with --train")
    b.add_argument("--train", metavar="PARADIGM", help="time training steps instead: a fresh generator of this "
                   "paradigm on --tokenizer's codes of --batch training emoji (with --compile: also compiled)")
    b.add_argument("--tokenizer", type=Path, help="--train: the tokenizer checkpoint folder")
    b.add_argument("--preset", default="arena", help="--train: the generator's size preset")
    b.add_argument("--train-steps", type=int, default=5, help="--train: steps timed, after 2 warm-up steps")
    b.add_argument("--batch", type=int, default=1)
    b.add_argument("--repeats", type=int, default=3)
    b.add_argument("--json", action="store_true", help="one JSON line")
    b.add_argument("--root", type=Path, default=None, help="checkpoints folder")
    b.add_argument("--sweep", action="append", help="also measure at these values of a control, e.g. steps=4,8,16; "
                   "repeat it for more rows; `zip_window=2,4 jacobi_window=8`: every combination")
    b.add_argument("--markdown", action="store_true", help="a table instead of JSON")
    b.add_argument("--write", type=Path, help="put the table in this README, between its BENCH markers")
    b.add_argument("--against", help="comma-separated models measured in the same run, e.g. raster-emoji32")
    b.add_argument("--compile", action="store_true", help="also the model with its decode step compiled by "
                   "torch.compile (raster models), in the same run: its first image pays the compilation")
    b.add_argument("--app", action="store_true", help="what a person waits for: start app.py and time each image's "
                   "first update and whole stream through gradio_client, beside the sampler alone")
    b.set_defaults(func=_bench)
    s = sub.add_parser("soak", help="the app under a long mixed load: requests served/refused/failed, latency, and "
                       "the server's memory and temp disk over the run; exit 1 if any failed")
    s.add_argument("--requests", type=int, default=200, help="requests to send (all models, good and bad controls)")
    s.add_argument("--concurrency", type=int, default=4, help="clients sending at once (1-16)")
    s.add_argument("--root", type=Path, default=None, help="checkpoints folder (default: the app's)")
    s.add_argument("--seed", type=int, default=0, help="seed of the requests drawn")
    s.add_argument("--cache-seconds", type=int, default=60, help="the app's MINDMAP_CACHE_SECONDS: how long a "
                   "picture sent stays in its temp folder")
    s.add_argument("--request-seconds", type=float, default=None, help="the app's MINDMAP_REQUEST_SECONDS (its "
                   "work budget per request; default the app's)")
    s.add_argument("--markdown", action="store_true", help="tables instead of JSON")
    s.add_argument("--json", action="store_true", help="one JSON line")
    s.set_defaults(func=_soak)

    c = sub.add_parser("convert", help="turn a published checkpoint (LlamaGen, ...) into a MINDmap checkpoint folder")
    c.add_argument("family", help="the model family, e.g. llamagen")
    c.add_argument("--out", type=Path, required=True, help="checkpoint folder to write")
    c.add_argument("--size", help="the family's size (llamagen: B, L at 256 px, B-384 ... 3B-384; var: d16, d20, d24, d30; mar: B, L, H; amused: 256); default its smallest")
    c.add_argument("--random-init", action="store_true", help="no source files: the architecture at random weights "
                   "(speed at the published size on any machine)")
    c.add_argument("--arch", help="JSON (inline or a .json file) of architecture overrides by role, e.g. "
                   "'{\"generator\": {\"n_layers\": 2}}' (the parity tests' tiny models)")
    c.add_argument("--seed", type=int, default=0, help="seed of --random-init")
    c.add_argument("--force", action="store_true", help="replace a checkpoint folder already at --out")
    c.set_defaults(func=_convert)

    h = sub.add_parser("fetch", help="download a published generator by name (llamagen-b-256, ...), convert it, "
                       "cache it")
    h.add_argument("name", help="a published model, e.g. llamagen-b-256 or var-d16 (an unknown name lists them all)")
    h.add_argument("--root", type=Path, default=None, help="folder to put it in (default $MINDMAP_MODELS or "
                   "~/.cache/mindmap/models)")
    h.add_argument("--force", action="store_true", help="download and convert again")
    h.set_defaults(func=_fetch)

    r = sub.add_parser("race", help="one class and seed decoded by every class generator side by side, on one "
                       "clock: a GIF and each model's network calls and milliseconds")
    r.add_argument("--class", dest="class_name", required=True, help="an emoji class, e.g. face-smiling")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--style", help="emoji art style for the models with a style condition (the others: as trained)")
    r.add_argument("--out", type=Path, default=Path("race.gif"), help="the GIF to write")
    r.add_argument("--models", help="comma-separated generators (default: every class generator that knows the class)")
    r.add_argument("--tick", type=float, default=0.1, help="seconds of the race's clock per GIF frame")
    r.add_argument("--root", type=Path, default=None, help="checkpoints folder")
    r.set_defaults(func=_race)
    if command in heavy:
        heavy[command](sub.choices[command])
    return p


def _dtype_flag(parser: argparse.ArgumentParser):
    parser.add_argument("--dtype", help="float32 or bfloat16: the generator's weights and activations (default: "
                        "float32; bfloat16 on a GPU for published models); the tokenizer stays float32")


def _check_write(args):
    """`--write` names an existing README (its section markers are replaced): checked before any work."""
    if args.write and not Path(args.write).is_file():
        raise ValueError(f"--write {args.write} is not a file (a README with the section markers)")


def _sampling_flags(parser: argparse.ArgumentParser):
    from .cli_controls import add_sampling_flags
    add_sampling_flags(parser)


def _bench_flags(parser: argparse.ArgumentParser):
    from .train.common import MIXED_PRECISION
    _sampling_flags(parser)
    parser.add_argument("--mixed-precision", default="no", choices=MIXED_PRECISION,
                        help="--train: autocast the forward passes")


def _convert_flags(parser: argparse.ArgumentParser):
    from .convert import FAMILIES
    flags = {}
    for fam in FAMILIES.values():
        for s in fam.sources:
            if s.help:
                flags.setdefault(s.flag, []).append(f"{fam.name}: {s.help}")
    for flag, helps in flags.items():
        parser.add_argument(f"--{flag}", type=Path, help="; ".join(helps))


def _train_flags(parser: argparse.ArgumentParser):
    from .paradigms import PARADIGMS
    from .train.common import MIXED_PRECISION
    trainable = [p.name for p in PARADIGMS.values() if p.recipe]
    texts = [p.name for p in PARADIGMS.values() if p.recipe and p.text]
    parser.add_argument("--paradigm", default="raster", help=f"generator: {', '.join(trainable)}")
    parser.add_argument("--conditioning", default="class", help=f"generator: class, or text ({', '.join(texts)})")
    parser.add_argument("--mixed-precision", default="no", choices=MIXED_PRECISION,
                        help="autocast the forward passes (bf16 on recent CPUs and GPUs, fp16 on GPUs)")
    parser.add_argument("--compile", action="store_true",
                        help="generator, suite: train through torch.compile (inductor; compiles for a minute or two "
                             "first; the saved state is the same, so a run resumes with or without it)")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    args = _parser(command).parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose or args.command in ("train", "data") else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from .hub import FetchError
    try:
        rc = args.func(args)
    except FetchError as e:          # needs the network: its own exit code
        print(f"error: {e}", file=sys.stderr)
        return 3
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return rc or 0


if __name__ == "__main__":
    sys.exit(main())
