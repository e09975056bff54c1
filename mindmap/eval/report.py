"""Measured results into the open: README tables, model cards and the quality/speed plot.

Tables are written between `<!-- NAME -->` and `<!-- /NAME -->` markers, so the README's figures are
always the output of the command named above them, never typed.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable

from ..checkpoint import MANIFEST, default_root
from ..data import STYLES

CARD_HEADING = "## Evaluation"


def replace_section(text: str, key: str, body: str) -> str:
    """`text` with everything between the `key` markers replaced by `body`."""
    pattern = re.compile(rf"(<!-- {re.escape(key)} -->\n).*?(<!-- /{re.escape(key)} -->)", re.S)
    if not pattern.search(text):
        raise ValueError(f"no <!-- {key} --> ... <!-- /{key} --> markers to write between")
    return pattern.sub(lambda m: m.group(1) + body.rstrip() + "\n" + m.group(2), text, count=1)


def write_section(path: Path, key: str, body: str):
    path = Path(path)
    path.write_text(replace_section(path.read_text(), key, body))


def markdown(columns: list[tuple[str, Callable[[dict], str]]], rows: list[dict]) -> str:
    """A markdown table: one (header, cell formatter) per column, one line per row."""
    head = "| " + " | ".join(h for h, _ in columns) + " |\n|" + "---|" * len(columns)
    return "\n".join([head, *("| " + " | ".join(cell(r) for _, cell in columns) + " |" for r in rows)])


def _pair(a: float, b: float, fmt: str = ".2f") -> str:
    return f"{a:{fmt}} / {b:{fmt}}"


def _kid(r: dict, which: str) -> str:
    """KID x 1000 with its standard deviation over subsets ("—" in a row measured before KID was)."""
    if f"kid{which}" not in r:
        return "—"
    return f"{1e3 * r[f'kid{which}']:.2f} ± {1e3 * r[f'kid{which}_std']:.2f}"


def train_fd(r: dict) -> float:
    """FD-emoji of training images matched per class, scored like the samples (`fd_emoji_floor` in older rows)."""
    return r["fd_emoji_train"] if "fd_emoji_train" in r else r["fd_emoji_floor"]


def styles_label(styles: list[str]) -> str:
    return f"all {len(STYLES)} styles" if set(styles) == set(STYLES) else ", ".join(styles)


def scored_on(rows: list[dict]) -> str:
    """Which held-out emoji the rows are scored against: one style set for all, or each model's own."""
    sets = {tuple(r.get("styles") or ()) for r in rows}
    if len(sets) == 1 and () not in sets:
        return f"scored against the held-out emoji of {styles_label(rows[0]['styles'])}"
    return "each model scored against the held-out emoji of the styles it learnt"


def reference_note(rows: list[dict]) -> str:
    """What two samples of the real held-out law score against each other (disjoint random halves): the level
    below which no model can be told from real emoji by these metrics; one line per scored style set."""
    firsts: dict[tuple, dict] = {}
    for r in rows:
        if "fd_emoji_real" in r:
            firsts.setdefault(tuple(r.get("styles") or ()), r)
    if not firsts:
        return ""
    lines = [(f"On {styles_label(list(key))}: held-out" if len(firsts) > 1 and key else "Reference: held-out")
             + f" emoji against held-out emoji (two disjoint random halves) score FD-emoji {r['fd_emoji_real']:.2f} "
             f"and KID x 10^3 {_kid(r, '_real')}" for key, r in firsts.items()]
    return "; ".join(lines) + "; FD grows as samples shrink, KID does not."


GENERATOR_COLUMNS = [
    ("model", lambda r: r["model"]), ("paradigm", lambda r: r["paradigm"]),
    ("params", lambda r: f"{r['params'] / 1e6:.1f}M"),
    ("training images seen", lambda r: " + ".join(f"{n / 1e3:,.0f}k" for n in r["samples_seen"])
     if r.get("samples_seen") else "—"),
    ("tokens", lambda r: str(r["tokens"])),
    ("network calls", lambda r: str(r["network_calls"])), ("s/image (CPU)", lambda r: f"{r['seconds_per_image']:.3f}"),
    ("FD-emoji [95% interval]", lambda r: f"{r['fd_emoji']:.2f}" + (
        " [{:.2f}, {:.2f}]".format(*r["fd_emoji_interval"]) if "fd_emoji_interval" in r else "")),
    ("KID x 10^3 (± std)", lambda r: _kid(r, "")),
    ("training images: FD-emoji / KID x 10^3", lambda r: f"{train_fd(r):.2f} / {_kid(r, '_train')}"),
    ("class top-1 / top-5", lambda r: _pair(r["class_top1"], r["class_top5"])),
    ("style agreement (tokenizer's ceiling)", lambda r: f"{r['style_top1']:.2f}" + (
        f" ({r['style_top1_ceiling']:.2f})" if "style_top1_ceiling" in r else "") if "style_top1" in r else "—"),
    ("precision", lambda r: f"{r['precision']:.2f}"), ("recall", lambda r: f"{r['recall']:.2f}"),
    ("memorized", lambda r: f"{r['memorized']:.3f}"),
]
TEXT_COLUMNS = [
    ("model", lambda r: r["model"]), ("held-out prompts", lambda r: str(r["n"])),
    ("subcategory top-1 / top-5", lambda r: _pair(r["class_top1"], r["class_top5"])),
    ("retrieval @1 / @5 / @10 (chance)", lambda r: " / ".join(f"{r[f'retrieval_top{k}']:.3f}" for k in (1, 5, 10))
     + " (" + " / ".join(f"{r[f'retrieval_top{k}_chance']:.3f}" for k in (1, 5, 10)) + ")"),
    ("FD-emoji", lambda r: f"{r['fd_emoji']:.2f}"), ("s/image", lambda r: f"{r['seconds_per_image']:.3f}"),
]
TOKENIZER_COLUMNS = [
    ("tokenizer", lambda r: r["tokenizer"]), ("kind", lambda r: r["kind"]), ("tokens", lambda r: str(r["tokens"])),
    ("held-out styles", lambda r: styles_label(r["styles"]).removesuffix(" styles")),
    ("held-out PSNR (dB)", lambda r: f"{r['psnr']:.2f}"),
    ("PSNR by level (dB)", lambda r: " · ".join(f"{k} {v:.1f}" for k, v in r["psnr_by_preview"].items())
     if "psnr_by_preview" in r else "—"),
    ("SSIM", lambda r: f"{r['ssim']:.3f}"), ("rFD-emoji", lambda r: f"{r['rfd_emoji']:.2f}"),
    ("codebook usage", lambda r: f"{r['codebook_usage']:.1%}" if "codebook_usage" in r else "— (continuous)"),
    ("perplexity", lambda r: f"{r['perplexity']:.0f}" if "perplexity" in r else "—"),
    ("style agreement", lambda r: f"{r['style_top1_ceiling']:.2f}" if "style_top1_ceiling" in r else "—"),
]

# Masked quantization's trade-off in one table: per mask ratio, the tokenizer's ceiling and the generator's cost.
_GENERATOR_CELLS = dict(GENERATOR_COLUMNS)
MQ_COLUMNS = [
    ("model", lambda r: r["model"].split(" ")[0]), ("mask ratio", lambda r: f"{r['controls'].get('mask_ratio', '—')}"),
    ("tokenizer held-out PSNR (dB)", lambda r: f"{r['tokenizer_psnr']:.2f}"),
    *((h, _GENERATOR_CELLS[h]) for h in ("tokens", "network calls", "s/image (CPU)", "FD-emoji [95% interval]",
                                         "class top-1 / top-5")),
]


def generator_table(rows: list[dict]) -> str:
    return markdown(GENERATOR_COLUMNS, rows)


def text_table(rows: list[dict]) -> str:
    """Text models: held-out prompts' subcategory agreement and retrieval of the prompt's real emoji."""
    return markdown(TEXT_COLUMNS, [r for r in rows if "retrieval_top1" in r])


def mq_table(rows: list[dict]) -> str:
    """MQ rows only (those with the tokenizer's PSNR at their mask ratio)."""
    return markdown(MQ_COLUMNS, [r for r in rows if "tokenizer_psnr" in r])


def tokenizer_table(rows: list[dict]) -> str:
    return markdown(TOKENIZER_COLUMNS, rows)


def update_cards(rows: list[dict], command: str, root: Path | None = None):
    """Put each model's rows (its variants included) in its card and its manifest's `eval`."""
    root = Path(root or default_root())
    by_model: dict[str, list[dict]] = {}
    for r in rows:
        by_model.setdefault(r["model"].split(" ")[0], []).append(r)
    for name, mine in by_model.items():
        card = root / name / "README.md"
        text = card.read_text() if card.exists() else f"# {name}\n"
        text = text.split(f"\n{CARD_HEADING}")[0].rstrip() + "\n"
        extra = f"\n{text_table(mine)}\n" if any("retrieval_top1" in r for r in mine) else ""
        card.write_text(f"{text}\n{CARD_HEADING}\nMeasured by `{command}` against the held-out split (training "
                        f"images matched per class are scored the same way beside them):\n\n{generator_table(mine)}\n\n"
                        f"{reference_note(mine)}\n{extra}")
        manifest_path = root / name / MANIFEST
        manifest = json.loads(manifest_path.read_text())
        manifest["eval"] = [{k: v for k, v in r.items() if k != "fid_note"} for r in mine]
        manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")


def write_results(readme: Path, rows: list[dict], command: str, sweeps: bool = True):
    """`eval --all --write README`: the generator table (and the reference) in its RESULTS section, the text
    models' in TEXT, the mask-ratio trade-off in MQ (only from a run with the sweeps), and the quality/speed plot."""
    write_section(readme, "RESULTS", f"Measured by `{command}` ({rows[0]['n']} samples per row, spread evenly over "
                  f"the 99 classes, {scored_on(rows)}):\n\n{generator_table(rows)}\n\n{reference_note(rows)}")
    plot_quality_speed(rows, Path(readme).parent / "assets" / "quality_speed.png")
    if sweeps and any("tokenizer_psnr" in r for r in rows):
        write_section(readme, "MQ", f"Measured by `{command}` (the same rows as above):\n\n" + mq_table(rows))
    if any("retrieval_top1" in r for r in rows):
        write_section(readme, "TEXT", f"Measured by `{command}` (one image per held-out emoji, prompted with its "
                      "name):\n\n" + text_table(rows))


TUNE_HEADING = "## Defaults"


def write_tuned_default(rows: list[dict], control: str, command: str, root: Path | None = None) -> dict:
    """Make the lowest-FD-emoji value of `control` among `rows` (one model's sweep) its default, and say so."""
    best = min(rows, key=lambda r: r["fd_emoji"])
    name = best["model"].split(" ")[0]
    folder = Path(root or default_root()) / name
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest.setdefault("defaults", {})[control] = best["controls"][control]
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    card = folder / "README.md"
    text = card.read_text() if card.exists() else f"# {name}\n"
    head, _, rest = text.partition(f"\n{TUNE_HEADING}")
    tail = rest[rest.find("\n## ", 1):] if "\n## " in rest[1:] else ""
    card.write_text(f"{head.rstrip()}\n\n{TUNE_HEADING}\n`{control}` = {best['controls'][control]}, the lowest FD-emoji "
                    f"of this sweep (`{command}`):\n\n{generator_table(rows)}\n{tail}")
    return manifest["defaults"]


def plot_quality_speed(rows: list[dict], path: Path):
    """FD-emoji (with its bootstrap interval where measured) against seconds per image, one labelled point per row;
    dashed, what real images score the same way: held-out against held-out, else training images."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter, NullFormatter

    fig, ax = plt.subplots(figsize=(10, 5), dpi=120)
    colours: dict[str, str] = {}
    for r in rows:
        first = r["paradigm"] not in colours
        colour = colours.setdefault(r["paradigm"], f"C{len(colours)}")
        styled = "style_top1" in r        # a model with the style condition (the arena's): filled, else hollow
        ax.scatter(r["seconds_per_image"], r["fd_emoji"], s=40, zorder=3, label=r["paradigm"] if first else None,
                   color=colour if styled else "white", edgecolors=colour, linewidths=1.5)
        if "fd_emoji_interval" in r:
            low, high = r["fd_emoji_interval"]
            ax.errorbar(r["seconds_per_image"], r["fd_emoji"], yerr=[[r["fd_emoji"] - low], [high - r["fd_emoji"]]],
                        color=colour, lw=1, capsize=2, zorder=2)
        short = r["model"].replace("-emoji32", "").replace("diffusion_steps", "diff").replace("mask_ratio", "ratio")
        ax.annotate(short, (r["seconds_per_image"], r["fd_emoji"]), fontsize=7, xytext=(4, 3),
                    textcoords="offset points")
    levels = {}   # class models are scored against the held-out split, text models against held-out prompts
    for r in rows:
        what = "text prompts" if r.get("conditioning") == "text" else "classes"
        levels.setdefault(*(("held-out vs held-out (halves)", r["fd_emoji_real"]) if "fd_emoji_real" in r else
                            (f"training images, {what}", train_fd(r))))
    for i, (what, level) in enumerate(sorted(levels.items())):
        ax.axhline(level, color="grey", ls="--" if i == 0 else ":", lw=1, label=f"{what} ({level:.1f})")
    if len({"style_top1" in r for r in rows}) == 2:
        for styled, what in ((True, "filled: with a style condition (arena)"), (False, "hollow: without")):
            ax.scatter([], [], s=40, color="grey" if styled else "white", edgecolors="grey", label=what)
    ax.set_xscale("log")
    lo, hi = min(r["seconds_per_image"] for r in rows), max(r["seconds_per_image"] for r in rows)
    left, right = lo / 1.3, hi * 2.2                 # room for the right-most label
    ax.set_xlim(left, right)
    ax.set_xticks([t for t in (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10) if left <= t <= right])
    ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("seconds per image (this CPU, log scale)")
    ax.set_ylabel("FD-emoji (lower is better)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def plot_learning_curves(folder: Path, path: Path) -> Path | None:
    """Each generator's held-out and training loss against training samples seen (the `heldout.csv` that
    `train generator --curve-every N` writes, one per model folder or as `<model>.csv` in `folder`), a panel each:
    the losses differ by paradigm (cross-entropy, summed over depths for DnD, noise MSE for MAR)."""
    import csv

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {}
    for f in sorted(Path(folder).glob("*.csv")) + sorted(Path(folder).glob("*/heldout.csv")):
        name = f.stem if f.name != "heldout.csv" else f.parent.name
        with open(f, newline="") as handle:
            rows = list(csv.DictReader(handle))
        if rows:
            curves[name] = rows
    if not curves:
        return None
    cols = min(3, len(curves))
    fig, axes = plt.subplots((len(curves) + cols - 1) // cols, cols, figsize=(4 * cols, 3 * ((len(curves) + cols - 1)
                             // cols)), dpi=110, squeeze=False)
    for ax, (name, rows) in zip(axes.flat, curves.items()):
        seen = [int(r["samples_seen"]) / 1e3 for r in rows]
        held, train = [float(r["heldout"]) for r in rows], [float(r["train"]) for r in rows]
        ax.plot(seen, held, "o-", ms=3, label="held-out emoji")
        ax.plot(seen, train, "s--", ms=3, label="training emoji")
        best = min(range(len(held)), key=held.__getitem__)
        ax.axvline(seen[best], color="grey", lw=0.8, ls=":")
        ax.set_title(f"{name} (held-out best at {seen[best]:.0f}k)", fontsize=9)
        ax.set_xlabel("training samples seen (thousands)", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(curves):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
