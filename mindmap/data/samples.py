"""A few held-out emoji shipped in `assets/` for the tokenizer lab, and validated loading of user images.

`python -m mindmap data samples` picks one held-out emoji per subcategory (no skin tones, styles
alternating) from the built emoji set and writes them as one sprite PNG plus an index, so the app's
tokenizer lab works on a fresh machine without the full data. The art keeps its licences (README).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .emoji import LICENSES, load_emoji

SAMPLES = Path(__file__).resolve().parent.parent.parent / "assets" / "heldout"
COLUMNS = 12
MAX_UPLOAD_BYTES = 10 * 2**20
MAX_UPLOAD_SIDE = 4096
FORMATS = {"PNG", "JPEG", "WEBP", "GIF", "BMP"}


def write_samples(out: Path = SAMPLES, size: int = 32, per_class: int = 1) -> Path:
    """Write `emoji{size}.png` (a sprite, COLUMNS wide) and `emoji{size}.json` (names, classes, styles)."""
    data = load_emoji(size)
    candidates: dict[tuple[str, str], list[int]] = {}
    for i, r in enumerate(data.records):
        if r["split"] == "heldout" and r["skin"] is None:
            candidates.setdefault((r["subcategory"], r["style"]), []).append(i)
    picks = []
    for k, name in enumerate(data.classes):     # styles alternate from class to class
        styles = ("twitter", "google") if k % 2 == 0 else ("google", "twitter")
        pool = candidates.get((name, styles[0])) or candidates.get((name, styles[1])) or []
        picks += pool[:per_class]
    rows = -(-len(picks) // COLUMNS)
    sprite = np.full((rows * size, COLUMNS * size, 3), 255, dtype=np.uint8)
    for k, i in enumerate(picks):
        y, x = divmod(k, COLUMNS)
        sprite[y * size:(y + 1) * size, x * size:(x + 1) * size] = data.images[i]
    out.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sprite).save(out / f"emoji{size}.png", optimize=True)
    index = {"size": size, "columns": COLUMNS, "licenses": LICENSES,
             "items": [{"name": data.records[i]["name"], "subcategory": data.records[i]["subcategory"],
                        "style": data.records[i]["style"]} for i in picks]}
    (out / f"emoji{size}.json").write_text(json.dumps(index, indent=1) + "\n")
    return out


def load_samples(size: int = 32, folder: Path = SAMPLES) -> dict[str, torch.Tensor]:
    """Shipped held-out emoji by label ("red apple (google)") -> (3, size, size) in [-1, 1]; {} if absent."""
    index_path = folder / f"emoji{size}.json"
    if not index_path.exists():
        return {}
    index = json.loads(index_path.read_text())
    sprite = np.asarray(Image.open(folder / f"emoji{size}.png").convert("RGB"))
    out = {}
    for k, item in enumerate(index["items"]):
        y, x = divmod(k, index["columns"])
        tile = sprite[y * size:(y + 1) * size, x * size:(x + 1) * size]
        out[f"{item['name']} ({item['style']})"] = torch.from_numpy(tile.copy()).permute(2, 0, 1).float() / 127.5 - 1
    return out


def load_user_image(path: Path, size: int) -> torch.Tensor:
    """An uploaded picture as (3, size, size) in [-1, 1]: checked, composited on white, centre-cropped, area-resized.

    Refused with a ValueError naming the problem: not an image, an unsupported format, too many bytes,
    or sides over MAX_UPLOAD_SIDE.
    """
    path = Path(path)
    if path.stat().st_size > MAX_UPLOAD_BYTES:
        raise ValueError(f"image must be at most {MAX_UPLOAD_BYTES // 2**20} MB, got {path.stat().st_size / 2**20:.1f} MB")
    try:
        with Image.open(path) as im:
            if im.format not in FORMATS:
                raise ValueError(f"image must be one of {', '.join(sorted(FORMATS))}, got {im.format}")
            if max(im.size) > MAX_UPLOAD_SIDE:
                raise ValueError(f"image sides must be at most {MAX_UPLOAD_SIDE} px, got {im.size[0]}x{im.size[1]}")
            rgba = im.convert("RGBA")
    except Image.DecompressionBombError:          # refused by Pillow before decoding: the header claims too much
        raise ValueError(f"image sides must be at most {MAX_UPLOAD_SIDE} px; its header claims over "
                         f"{Image.MAX_IMAGE_PIXELS * 2} pixels") from None
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"image could not be read as a picture ({type(e).__name__})") from None
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(white, rgba).convert("RGB")
    side = min(rgb.size)
    left, top = (rgb.width - side) // 2, (rgb.height - side) // 2
    rgb = rgb.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BOX)
    return torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1).float() / 127.5 - 1
