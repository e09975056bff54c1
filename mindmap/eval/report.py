"""Measured results into the open: README tables, model cards and the quality/speed plot.

Tables are written between `<!-- NAME -->` and `<!-- /NAME -->` markers, so the README's figures are
always the output of the command named above them, never typed.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from ..checkpoint import MANIFEST, default_root

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


def generator_table(rows: list[dict]) -> str:
    head = ("| model | paradigm | params | tokens | network calls | s/image (CPU) | FD-emoji (floor) | "
            "class top-1 / top-5 | precision | recall | memorized |\n|---|---|---|---|---|---|---|---|---|---|---|")
    lines = [f"| {r['model']} | {r['paradigm']} | {r['params'] / 1e6:.1f}M | {r['tokens']} | {r['network_calls']} | "
             f"{r['seconds_per_image']:.3f} | {r['fd_emoji']:.2f} ({r['fd_emoji_floor']:.2f}) | "
             f"{r['class_top1']:.2f} / {r['class_top5']:.2f} | {r['precision']:.2f} | {r['recall']:.2f} | "
             f"{r['memorized']:.3f} |" for r in rows]
    return "\n".join([head, *lines])


def text_table(rows: list[dict]) -> str:
    """Text models: held-out prompts' subcategory agreement and retrieval of the prompt's real emoji."""
    head = ("| model | held-out prompts | subcategory top-1 / top-5 | retrieval @1 / @5 / @10 (chance) | FD-emoji | "
            "s/image |\n|---|---|---|---|---|---|")
    lines = [f"| {r['model']} | {r['n']} | {r['class_top1']:.2f} / {r['class_top5']:.2f} | "
             f"{r['retrieval_top1']:.3f} / {r['retrieval_top5']:.3f} / {r['retrieval_top10']:.3f} "
             f"({r['retrieval_top1_chance']:.3f} / {r['retrieval_top5_chance']:.3f} / {r['retrieval_top10_chance']:.3f}) | "
             f"{r['fd_emoji']:.2f} | {r['seconds_per_image']:.3f} |" for r in rows if "retrieval_top1" in r]
    return "\n".join([head, *lines])


def tokenizer_table(rows: list[dict]) -> str:
    head = ("| tokenizer | kind | tokens | held-out PSNR (dB) | PSNR by level (dB) | SSIM | rFD-emoji | "
            "codebook usage | perplexity |\n|---|---|---|---|---|---|---|---|---|")
    lines = [f"| {r['tokenizer']} | {r['kind']} | {r['tokens']} | {r['psnr']:.2f} | "
             + (" · ".join(f"{k} {v:.1f}" for k, v in r["psnr_by_preview"].items()) if len(r["psnr_by_preview"]) > 1
                else "—")
             + f" | {r['ssim']:.3f} | {r['rfd_emoji']:.2f} | {r['codebook_usage']:.1%} | {r['perplexity']:.0f} |"
             for r in rows]
    return "\n".join([head, *lines])


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
        card.write_text(f"{text}\n{CARD_HEADING}\nMeasured by `{command}` (the held-out split; FD-emoji's floor is "
                        f"real training images against the same held-out set):\n\n{generator_table(mine)}\n{extra}")
        manifest_path = root / name / MANIFEST
        manifest = json.loads(manifest_path.read_text())
        manifest["eval"] = [{k: v for k, v in r.items() if k != "fid_note"} for r in mine]
        manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")


def plot_quality_speed(rows: list[dict], path: Path):
    """FD-emoji against seconds per image, one labelled point per row; the real-data floor dashed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=120)
    colours: dict[str, str] = {}
    for r in rows:
        first = r["paradigm"] not in colours
        colour = colours.setdefault(r["paradigm"], f"C{len(colours)}")
        ax.scatter(r["seconds_per_image"], r["fd_emoji"], color=colour, s=40, zorder=3,
                   label=r["paradigm"] if first else None)
        ax.annotate(r["model"], (r["seconds_per_image"], r["fd_emoji"]), fontsize=7, xytext=(4, 3),
                    textcoords="offset points")
    floor = min(r["fd_emoji_floor"] for r in rows)
    ax.axhline(floor, color="grey", ls="--", lw=1, label=f"real vs real floor ({floor:.1f})")
    ax.set_xscale("log")
    ax.set_xlabel("seconds per image (this CPU, batch of one class)")
    ax.set_ylabel("FD-emoji (lower is better)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
