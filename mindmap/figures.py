"""`mindmap figures`: every picture in the README, made by one command from the shipped models.

- `compare.png`: each class model (rows) on the same classes and seeds (columns), at its defaults;
- `decode-<paradigm>.gif`: one decoding run per paradigm, with its order, confidence and own view;
- `importance.png`: an MQ tokenizer's importance maps and kept cells on held-out emoji;
- `prompts.png`: a text model on held-out emoji names, beside the real emoji;
- `emoji_styles.png`: the training art, a few emoji in every style;
- `styles.png`: the style swap: each model with a style condition on a few classes at one seed, in every style.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from .data.emoji import load_emoji
from .frames import to_pil
from .registry import list_models, list_tokenizers, load_pipeline, load_tokenizer
from .viz import font, importance_map, kept_map, save_gif

logger = logging.getLogger(__name__)

CLASSES = ("face-smiling", "cat-face", "heart", "food-fruit", "animal-mammal", "transport-ground", "country-flag",
           "sky & weather")


def labelled_rows(rows: list[tuple[str, list[Image.Image]]], header: list[str] | None = None,
                  label_width: int = 170) -> Image.Image:
    """Rows of equal tiles with a label on the left (and column headers on top)."""
    tile = rows[0][1][0]
    pad, top = 4, (18 if header else 0)
    cols = max(len(r[1]) for r in rows)
    overhang = max([font(11).getlength(h[:28]) - (cols - c) * (tile.width + pad) for c, h in enumerate(header or [])]
                   + [0])     # a header wider than the columns left of the edge widens the canvas
    out = Image.new("RGB", (label_width + cols * (tile.width + pad) + int(overhang + 0.5),
                            top + len(rows) * (tile.height + pad)), "white")
    draw = ImageDraw.Draw(out)
    for c, text in enumerate(header or []):
        draw.text((label_width + c * (tile.width + pad), 2), text[:28], fill=(30, 30, 30), font=font(11))
    for r, (label, tiles) in enumerate(rows):
        y = top + r * (tile.height + pad)
        draw.text((4, y + tile.height // 2 - 7), label, fill=(30, 30, 30), font=font(12))
        for c, im in enumerate(tiles):
            out.paste(im, (label_width + c * (tile.width + pad), y))
    return out


def compare(root, out: Path, seeds: int = 2, scale: int = 3) -> Path | None:
    """Each class model at its defaults, on the same classes and seeds."""
    rows = []
    for entry in list_models(root):
        if entry.manifest.get("conditioning", "class") != "class":
            continue
        pipe = load_pipeline(entry.name, root)
        tiles = [to_pil(pipe(**{"class": c}, seed=s).image[0], scale) for c in CLASSES for s in range(seeds)]
        rows.append((f"{entry.name}\n({entry.manifest['paradigm']})", tiles))
    if not rows:
        return None
    labelled_rows(rows, [c if s == 0 else "" for c in CLASSES for s in range(seeds)]).save(out)
    return out


def gifs(root, folder: Path) -> list[Path]:
    """One decoding GIF per paradigm (the first class model of each), with the paradigm's own view."""
    done, paths = set(), []
    for entry in list_models(root):
        paradigm = entry.manifest["paradigm"]
        if paradigm in done or entry.manifest.get("conditioning", "class") != "class":
            continue
        done.add(paradigm)
        pipe = load_pipeline(entry.name, root)
        demo = pipe.paradigm.demo_class
        frames = list(pipe.stream(**{"class": demo if demo in pipe.classes else pipe.classes[0]}, seed=1))
        path = folder / f"decode-{paradigm}.gif"
        save_gif(frames, path, size=160, view=pipe.paradigm.view)
        paths.append(path)
    return paths


def importance(root, out: Path, count: int = 10, scale: int = 4) -> Path | None:
    """For an MQ tokenizer: held-out emoji, their importance maps, the cells kept at ratio 0.5, the rebuild."""
    names = [n for n in list_tokenizers(root) if hasattr(load_tokenizer(n, root), "importance")]
    if not names:
        return None
    tok = load_tokenizer(names[0], root)
    data = load_emoji(tok.image_size)
    held = [i for i, r in enumerate(data.records) if r["split"] == "heldout" and r["skin"] is None][::37][:count]
    x = data.tensor(held)
    codes = tok.encode(x, 0.5)
    size = tok.image_size * scale
    rows = [("held-out emoji", [to_pil(im, scale) for im in x]),
            ("importance", [importance_map(s, size) for s in tok.importance(x)]),
            ("kept at ratio 0.5", [kept_map(c >= 0, size) for c in codes]),
            ("rebuilt from them", [to_pil(im, scale) for im in tok.decode(codes)])]
    labelled_rows(rows, label_width=130).save(out)
    return out


def prompts(root, out: Path, count: int = 8, seeds: int = 3, scale: int = 3) -> Path | None:
    """A text model on held-out emoji names: the real emoji, then generated images."""
    texts = [e for e in list_models(root) if e.manifest.get("conditioning") == "text"]
    if not texts:
        return None
    pipe = load_pipeline(texts[0].name, root)
    data = load_emoji(pipe.manifest["image_size"])
    rows, seen = [], set()
    for i, r in enumerate(data.records):
        if r["split"] != "heldout" or r["skin"] is not None or r["style"] != "twitter" or r["category"] in seen:
            continue
        if r["category"] == "Component":
            continue
        seen.add(r["category"])
        made = pipe(prompt=r["name"], seed=0, batch=seeds).image
        rows.append((r["name"][:24], [to_pil(data.tensor([i])[0], scale), *[to_pil(im, scale) for im in made]]))
        if len(rows) == count:
            break
    labelled_rows(rows, ["real (held out)"] + [f"seed {s}" for s in range(seeds)]).save(out)
    return out


def style_samples(out: Path, names=("grinning face", "cat face", "red apple", "rocket", "sun with face")) -> Path:
    """The emoji art the models learn from: a few emoji (rows) in every style built (columns), 64 px."""
    data = load_emoji(64)
    rows = []
    for name in names:
        tiles = []
        for style in data.styles:
            i = next((i for i, r in enumerate(data.records)
                      if r["name"] == name and r["style"] == style and r["skin"] is None), None)
            tiles.append(to_pil(data.tensor([i])[0], 2) if i is not None else Image.new("RGB", (128, 128), "white"))
        rows.append((name, tiles))
    labelled_rows(rows, list(data.styles), label_width=110).save(out)
    return out


def style_swap(root, out: Path, classes=("face-smiling", "cat-face", "food-fruit", "transport-ground"), seed: int = 0,
               scale: int = 3) -> Path | None:
    """For each class: a row of real held-out emoji in every style, then every class model with a style condition
    drawing that class at one seed in each style (columns: 'any', then its styles)."""
    from .controls import ANY_STYLE
    pipes = {e.name: load_pipeline(e.name, root) for e in list_models(root)
             if e.manifest.get("style_condition") and all(c in e.manifest.get("classes", []) for c in classes)}
    if not pipes:
        return None
    styles = next(iter(pipes.values())).styles
    data = load_emoji(32, styles=styles)
    grid = []
    for class_name in classes:
        grid.append((f"{class_name}\nreal (held out)", [Image.new("RGB", (32 * scale,) * 2, "white"),
                                                        *(to_pil(x, scale) for x in real_in_styles(data, class_name))]))
        for name, pipe in pipes.items():
            grid.append((f"{name}\n({pipe.paradigm.name})",
                         [to_pil(pipe(**{"class": class_name}, style=s, seed=seed).image[0], scale)
                          for s in (ANY_STYLE, *pipe.styles)]))
    labelled_rows(grid, [ANY_STYLE, *styles]).save(out)
    return out


def real_in_styles(data, class_name: str) -> list[torch.Tensor]:
    """One held-out emoji of the class in each of `data`'s styles: the first one drawn in every style, else for a
    style without it the first of that style (no skin-tone variants)."""
    label = data.classes.index(class_name)
    rows = [i for i, r in enumerate(data.records) if r["label"] == label and r["split"] == "heldout" and r["skin"] is None]
    drawn = {}
    for i in rows:
        drawn.setdefault(data.records[i]["emoji"], {}).setdefault(data.records[i]["style"], i)
    common = next((by for by in drawn.values() if len(by) == len(data.styles)), {})
    return [data.tensor([common.get(s, next(i for i in rows if data.records[i]["style"] == s))])[0]
            for s in data.styles]


@torch.inference_mode()
def make_figures(root=None, folder: Path = Path("assets")) -> list[str]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    made = [compare(root, folder / "compare.png"), *gifs(root, folder), importance(root, folder / "importance.png"),
            prompts(root, folder / "prompts.png"), style_samples(folder / "emoji_styles.png"),
            style_swap(root, folder / "styles.png")]
    return [str(p) for p in made if p is not None]
