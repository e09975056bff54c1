"""Pictures of a run: order map, confidence map, mask overlay, token-index map, panels and GIFs.

Every map is a (grid x grid) array rendered to an RGB PIL image, upscaled nearest-neighbour so the
cells stay crisp; undecided cells are drawn grey.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .frames import Frame, to_pil

# Viridis at five stops (dark blue -> green -> yellow), interpolated linearly.
_VIRIDIS = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float64)
UNDECIDED = (128, 128, 128)


def font(size: int = 12) -> ImageFont.ImageFont:
    """Pillow's bundled scalable font (no system fonts needed)."""
    return ImageFont.load_default(size=size)


def colorize(values: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """(h, w) floats -> (h, w, 3) uint8 viridis; NaN cells grey."""
    t = np.clip((values - vmin) / max(vmax - vmin, 1e-12), 0, 1)
    pos = np.nan_to_num(t) * (len(_VIRIDIS) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(_VIRIDIS) - 2)
    frac = (pos - lo)[..., None]
    rgb = _VIRIDIS[lo] * (1 - frac) + _VIRIDIS[lo + 1] * frac
    rgb[np.isnan(values)] = UNDECIDED
    return rgb.round().astype(np.uint8)


def _upscale(rgb: np.ndarray, size: int) -> Image.Image:
    return Image.fromarray(rgb).resize((size, size), Image.Resampling.NEAREST)


def order_map(frame: Frame, index: int = 0, size: int = 256) -> Image.Image:
    """Colour = the step that decided each cell (early dark, late yellow); open cells grey."""
    order = frame.order[index].float().cpu().numpy()
    order[order < 0] = np.nan
    return _upscale(colorize(order, 0, max(frame.total - 1, 1)), size)


def confidence_map(frame: Frame, index: int = 0, size: int = 256) -> Image.Image:
    """Colour = probability the sampler gave the code it chose (0 dark, 1 yellow); open cells grey."""
    return _upscale(colorize(frame.confidence[index].float().cpu().numpy(), 0, 1), size)


def mask_overlay(frame: Frame, index: int = 0, size: int = 256) -> Image.Image:
    """The partial image with still-open cells tinted blue."""
    img = np.asarray(frame.pil(index).resize((size, size), Image.Resampling.NEAREST)).astype(np.float64)
    g = frame.mask.shape[-1]
    open_px = np.kron(frame.mask[index].cpu().numpy(), np.ones((size // g, size // g)))[..., None].astype(bool)
    tinted = np.where(open_px, 0.5 * img + 0.5 * np.array([70, 110, 220]), img)
    return Image.fromarray(tinted.round().astype(np.uint8))


def token_map(tokens: torch.Tensor, vocab_size: int, size: int = 256) -> Image.Image:
    """Each code index a fixed colour (a hash of the index), -1 grey: shows repeated codes."""
    t = tokens.cpu().numpy().astype(np.int64)
    rng = np.random.default_rng(0)  # a fixed palette, not a random draw of the run
    palette = rng.integers(40, 230, size=(vocab_size, 3)).astype(np.uint8)
    rgb = np.where((t >= 0)[..., None], palette[t.clip(0)], np.array(UNDECIDED, dtype=np.uint8))
    return _upscale(rgb.astype(np.uint8), size)


def panel(frame: Frame, index: int = 0, size: int = 192, view=None) -> Image.Image:
    """Image | order | confidence side by side, titled, with the step counter; the paradigm's own `view`
    (a `paradigms.View`, None: nothing) underneath, fitted to the panel's width."""
    tiles = [("image", frame.pil(index).resize((size, size), Image.Resampling.NEAREST)),
             ("order", order_map(frame, index, size)), ("confidence", confidence_map(frame, index, size))]
    pad, title = 6, 16
    width = len(tiles) * (size + pad) + pad
    strip = view.render(frame, index, width - 2 * pad) if view is not None else None
    out = Image.new("RGB", (width, size + title + 2 * pad + (strip.height + pad if strip else 0)), "white")
    draw = ImageDraw.Draw(out)
    for k, (name, tile) in enumerate(tiles):
        x = pad + k * (size + pad)
        out.paste(tile, (x, title + pad))
        label = f"{name}  {frame.step}/{frame.total}" if k == 0 else name
        draw.text((x, 2), label, fill=(30, 30, 30), font=font(12))
    if strip:
        out.paste(strip, (pad, title + 2 * pad + size))
    return out


def save_gif(frames: Iterable[Frame], path: Path, index: int = 0, size: int = 192, ms: int = 120, hold_ms: int = 1500,
             view=None):
    """Animated GIF of a run's panels (with the paradigm's `view`); the last frame is held."""
    images = [panel(f, index, size, view) for f in frames]
    if not images:
        raise ValueError("no frames to write")
    durations = [ms] * (len(images) - 1) + [hold_ms]
    images[0].save(path, save_all=True, append_images=images[1:], duration=durations, loop=0)


def grid_image(rows: list[list[torch.Tensor]], labels: list[str], scale: int = 3, label_width: int = 120) -> Image.Image:
    """A labelled grid: each row a list of (3, H, W) images in [-1, 1]."""
    first = to_pil(rows[0][0], scale)
    w, h, pad = first.width, first.height, 4
    cols = max(len(r) for r in rows)
    out = Image.new("RGB", (label_width + cols * (w + pad), len(rows) * (h + pad) + pad), "white")
    draw = ImageDraw.Draw(out)
    for r, (row, label) in enumerate(zip(rows, labels)):
        y = pad + r * (h + pad)
        draw.text((4, y + h // 2 - 7), label, fill=(30, 30, 30), font=font(12))
        for c, img in enumerate(row):
            out.paste(to_pil(img, scale), (label_width + c * (w + pad), y))
    return out


def schedule_plot(frame: Frame, width: int = 720, height: int = 150) -> Image.Image:
    """Cells committed per step, one bar a step coloured as in the order map; planned steps hollow.

    The plan comes from `frame.views["plan"]` (the whole schedule, known before decoding starts); a sampler
    without one (raster: codes decided per call, known only as they come) names its bars `views["schedule_label"]`.
    """
    done = frame.schedule or []
    plan = frame.views.get("plan", done)
    out = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(out)
    if not plan:
        return out
    left, bottom, top = 34, height - 18, 8
    slot = (width - left - 6) / len(plan)
    peak = max(plan)
    colours = colorize(np.arange(len(plan), dtype=np.float64), 0, max(len(plan) - 1, 1))
    for t, count in enumerate(plan):
        x0 = left + t * slot + (1 if slot > 4 else 0)
        x1 = max(x0 + 1, left + (t + 1) * slot - (1 if slot > 4 else 0) - 1)
        y0 = bottom - (bottom - top) * count / peak
        if t < len(done):
            draw.rectangle([x0, y0, x1, bottom], fill=tuple(int(c) for c in colours[t]))
        else:
            draw.rectangle([x0, y0, x1, bottom], outline=(170, 170, 170))
    draw.line([left, bottom, width - 4, bottom], fill=(90, 90, 90))
    draw.text((4, top - 2), str(peak), fill=(60, 60, 60), font=font(11))
    draw.text((4, bottom - 12), "0", fill=(60, 60, 60), font=font(11))
    label = frame.views.get("schedule_label")
    caption = (f"{label} ({len(done)} calls, {sum(done)} codes)" if label else
               f"cells committed per step ({len(done)}/{len(plan)} steps done)")
    draw.text((left, bottom + 3), caption, fill=(60, 60, 60), font=font(11))
    return out


def schedule_view(frame: Frame, index: int = 0, width: int | None = None) -> Image.Image:
    """The schedule plot as a paradigm view: 900 x 150 in the app, `width` x 110 under a panel."""
    return schedule_plot(frame, 900, 150) if width is None else schedule_plot(frame, width, 110)


def depth_strip(frame: Frame, index: int = 0, width: int | None = None) -> Image.Image:
    """The image decoded from its first 1, 2, ..., D codes per cell, side by side (`views["depth_strip"]`):
    160 px tiles, or as many as fit `width`."""
    images = frame.views["depth_strip"]
    size = 160 if width is None else width // len(images) - 8
    return titled_tiles([(f"depth {d + 1}" + (" (all codes)" if d == len(images) - 1 else ""),
                          to_pil(img[index]).resize((size, size), Image.Resampling.NEAREST))
                         for d, img in enumerate(images)])


def importance_map(scores: torch.Tensor, size: int = 256) -> Image.Image:
    """(g, g) importance scores in [0, 1] as viridis: yellow = kept first."""
    return _upscale(colorize(scores.float().cpu().numpy(), 0, 1), size)


def kept_map(kept: torch.Tensor, size: int = 256) -> Image.Image:
    """(g, g) bool: kept cells white, masked-out (rebuilt by the decoder) cells dark."""
    rgb = np.where(kept.cpu().numpy()[..., None], np.array([245, 245, 245]), np.array([40, 40, 60]))
    return _upscale(rgb.astype(np.uint8), size)


def titled_tiles(tiles: list[tuple[str, Image.Image]], pad: int = 8, title: int = 18) -> Image.Image:
    """Equal-size tiles side by side, each with its title above."""
    size, height = tiles[0][1].width, max(t.height for _, t in tiles)
    out = Image.new("RGB", (len(tiles) * (size + pad) + pad, height + title + pad), "white")
    draw = ImageDraw.Draw(out)
    for k, (name, tile) in enumerate(tiles):
        x = pad + k * (size + pad)
        out.paste(tile, (x, title))
        draw.text((x, 2), name, fill=(30, 30, 30), font=font(12))
    return out


def mq_view(frame: Frame, index: int = 0, width: int | None = None) -> Image.Image:
    """Masked quantization: the cells kept so far; at the end, what the MQ encoder finds important.
    160 px tiles, or under a panel `width` wide the size of its own three tiles."""
    size = 160 if width is None else (width - 12) // 3
    kept = ~frame.mask[index]
    tiles = [(f"kept {int(kept.sum())} of {kept.numel()} cells", kept_map(kept, size))]
    if "importance" in frame.views:
        tiles.append(("importance (re-encoded)", importance_map(frame.views["importance"][index], size)))
    return titled_tiles(tiles)


def pyramid_view(frame: Frame, index: int = 0, width: int | None = None, vocab_size: int = 4096) -> Image.Image:
    """Next-scale: the picture after each scale so far (top) and that scale's code map (bottom); 112 px
    tiles, or as many as fit `width`."""
    scales = frame.views["scales"]
    size = 112 if width is None else width // len(scales) - 8
    done = len(frame.views["pyramid"])
    tiles = []
    for k, s in enumerate(scales):
        if k < done:
            top = to_pil(frame.views["scale_images"][k][index]).resize((size, size), Image.Resampling.NEAREST)
            bottom = token_map(frame.views["pyramid"][k][index], vocab_size, size)
        else:
            top = bottom = Image.new("RGB", (size, size), UNDECIDED)
        both = Image.new("RGB", (size, 2 * size + 4), "white")
        both.paste(top, (0, 0))
        both.paste(bottom, (0, size + 4))
        tiles.append((f"{s}x{s}", both))
    return titled_tiles(tiles)
