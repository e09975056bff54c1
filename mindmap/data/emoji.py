"""Emoji art from the npm registry, six styles, composited on white.

`build_emoji` fetches pinned packages with `npm pack`: Twemoji and Noto as 64 px PNGs with their
`emoji.json` (name, short names, category, subcategory), and OpenMoji and Microsoft's Fluent emoji
(flat, modern and high-contrast) as SVGs, rasterised to 64 px with CairoSVG. Every style is keyed to
the same emoji-datasource entries, so an emoji has one name, one subcategory (its class) and one side
of the held-out split in every style. The split is by emoji (all styles and skin tones of one emoji
land on the same side), stratified by subcategory, decided by a hash of the emoji's code points so it
never moves. Images are composited on white and written as 32x32 and 64x64 uint8 arrays plus a
manifest; a rerun with the manifest in place does nothing.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

# Pinned so that the data, the split and the class list never move under a checkpoint. The first two styles
# are the emoji-datasource sets whose emoji.json every style is keyed to; their records come first, in the
# order format 1 wrote them, so a model trained on them reads the same images.
PACKAGES = {"twitter": ("emoji-datasource-twitter", "16.0.0"), "google": ("emoji-datasource-google", "16.0.0"),
            "openmoji": ("openmoji", "17.0.0"), "fluent-flat": ("fluentui-emoji", "1.3.0"),
            "fluent-modern": ("fluentui-emoji", "1.3.0"), "fluent-high-contrast": ("fluentui-emoji", "1.3.0")}
LICENSES = {
    "twitter": "Twemoji graphics (c) Twitter, Inc. and other contributors, CC-BY 4.0",
    "google": "Noto Emoji images (c) Google LLC, Apache License 2.0",
    "openmoji": "OpenMoji (c) OpenMoji contributors (openmoji.org), CC BY-SA 4.0",
    "fluent-flat": "Fluent Emoji (c) Microsoft Corporation, MIT License (npm package fluentui-emoji by Mohammad "
                   "Abu Mattar, MIT License)",
}
LICENSES["fluent-modern"] = LICENSES["fluent-high-contrast"] = LICENSES["fluent-flat"]
STYLES = tuple(PACKAGES)
LEGACY_STYLES = ("twitter", "google")     # what a checkpoint that names no styles was trained on
SIZES = (32, 64)
HELDOUT_FRACTION = 0.1
FORMAT_VERSION = 2
# Fluent's file suffix for each skin-tone modifier.
FLUENT_TONES = {"1F3FB": "light", "1F3FC": "medium-light", "1F3FD": "medium", "1F3FE": "medium-dark",
                "1F3FF": "dark"}


def data_dir() -> Path:
    """Where `mindmap data emoji` writes: $MINDMAP_DATA, else ~/.cache/mindmap."""
    return Path(os.environ.get("MINDMAP_DATA", Path.home() / ".cache" / "mindmap")) / "emoji"


def _npm_pack(package: str, version: str, dest: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not installed: `mindmap data emoji` needs npm to fetch the emoji packages "
                           "(Debian: apt-get install npm)")
    spec = f"{package}@{version}"
    proc = subprocess.run([npm, "pack", spec, "--pack-destination", str(dest), "--silent"],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"npm could not fetch {spec} from the registry: {' | '.join(tail)}")
    tgz = dest / f"{package}-{version}.tgz"
    if not tgz.exists():
        raise RuntimeError(f"npm pack {spec} wrote no {tgz.name}")
    return tgz


def _read_package(tgz: Path, style: str) -> tuple[list, dict[str, bytes], str]:
    """A package's metadata (emoji.json or OpenMoji's openmoji.json; [] for Fluent), this style's images by file
    stem (datasource PNGs by file name), and its LICENSE text."""
    files, meta, license_text = {}, None, ""
    # Where each package keeps this style's images, and its metadata file.
    prefix, suffix, meta_name = {
        "openmoji": ("package/color/svg/", ".svg", "package/data/openmoji.json"),
        "fluent-flat": ("package/icons/flat/", ".svg", None),
        "fluent-modern": ("package/icons/modern/", ".svg", None),
        "fluent-high-contrast": ("package/icons/high-contrast/", ".svg", None),
    }.get(style, (f"package/img/{style}/64/", ".png", "package/emoji.json"))
    with tarfile.open(tgz, "r:gz") as tar:
        for member in tar:
            if not member.isfile():
                continue
            if member.name == meta_name:
                meta = json.load(tar.extractfile(member))
            elif member.name in ("package/LICENSE", "package/LICENSE.txt"):
                license_text = tar.extractfile(member).read().decode("utf-8", "replace")
            elif member.name.startswith(prefix) and member.name.endswith(suffix):
                name = member.name[len(prefix):]
                files[name if suffix == ".png" else name[:-len(suffix)]] = tar.extractfile(member).read()
    if meta_name is not None and meta is None:
        raise RuntimeError(f"{tgz.name} has no {meta_name}")
    if not files:
        raise RuntimeError(f"{tgz.name} has no images under {prefix}")
    return meta or [], files, license_text


def _rasterise(svg: bytes) -> bytes:
    """An SVG drawn at 64x64 as a PNG (CairoSVG; external files and entities refused: unsafe=False)."""
    try:
        import cairosvg
    except (ImportError, OSError) as e:    # OSError: the Python package is there, the cairo library is not
        raise RuntimeError(f"`mindmap data emoji` rasterises the SVG emoji sets with CairoSVG, which cannot load "
                           f"({e}): pip install -r requirements.txt (and on Debian apt-get install libcairo2)") from None
    return cairosvg.svg2png(bytestring=svg, output_width=64, output_height=64, unsafe=False)


def _kebab(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _finder(style: str, files: dict[str, bytes], annotations: dict[str, str]):
    """find(entry, skin, variation) -> the style's image of that datasource entry (and skin tone), or None.

    OpenMoji names its files by code points; Fluent by CLDR name (OpenMoji's annotation of the same code points,
    else the datasource's name), '-default' or a tone suffix for emoji with skin tones."""
    if style == "openmoji":
        def find(e, skin, var):
            codes = (var["unified"], var.get("non_qualified")) if skin else (e["unified"], e.get("non_qualified"))
            return next((files[c] for c in codes if c in files), None)
        return find

    def find(e, skin, var):
        names = [_kebab(annotations[c]) for c in (e["unified"], e.get("non_qualified")) if c in annotations]
        names.append(_kebab(e.get("name") or e["short_name"]))
        tails = (f"-{FLUENT_TONES[skin]}",) if skin in FLUENT_TONES else () if skin else ("", "-default")
        return next((files[n + t] for n in names for t in tails if n + t in files), None)
    return find


def _keyed_records(meta: list[dict], style: str, classes: dict[str, int], held: set[str], find) -> list[dict]:
    """Records of a style keyed to the datasource entries `meta`; each carries its image bytes as "svg"."""
    out = []
    for e in sorted(meta, key=lambda e: e["sort_order"]):
        base = {"emoji": e["unified"], "name": (e.get("name") or e["short_name"]).lower(),
                "short_names": e.get("short_names", []), "category": e["category"],
                "subcategory": e["subcategory"], "label": classes[e["subcategory"]], "style": style,
                "split": "heldout" if e["unified"] in held else "train"}
        variants = [(None, None)] + sorted((e.get("skin_variations") or {}).items())
        for skin, var in variants:
            svg = find(e, skin, var)
            if svg is not None:
                out.append({**base, "skin": skin, "svg": svg})
    return out


def _on_white(png: bytes) -> dict[int, np.ndarray]:
    rgba = Image.open(io.BytesIO(png)).convert("RGBA")
    if rgba.size != (64, 64):
        rgba = rgba.resize((64, 64), Image.Resampling.LANCZOS)
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(white, rgba).convert("RGB")
    # BOX averages each 2x2 block: the area down-sampling that keeps thin strokes visible.
    return {s: np.asarray(rgb if s == 64 else rgb.resize((s, s), Image.Resampling.BOX)) for s in SIZES}


def _heldout_emoji(entries: list[dict]) -> set[str]:
    """Per subcategory, the ~10% of emoji with the smallest hash of their code points."""
    by_sub: dict[str, list[str]] = {}
    for e in entries:
        by_sub.setdefault(e["subcategory"], []).append(e["unified"])
    held = set()
    for codes in by_sub.values():
        if len(codes) < 3:
            continue  # too few to spare one: the class stays whole in training
        k = max(1, round(HELDOUT_FRACTION * len(codes)))
        held.update(sorted(codes, key=lambda c: hashlib.sha1(c.encode()).hexdigest())[:k])
    return held


def _records(meta: list[dict], style: str, classes: dict[str, int], held: set[str]) -> list[dict]:
    out = []
    for e in sorted(meta, key=lambda e: e["sort_order"]):
        if not e.get(f"has_img_{style}", False):
            continue
        base = {"emoji": e["unified"], "name": (e.get("name") or e["short_name"]).lower(),
                "short_names": e.get("short_names", []), "category": e["category"],
                "subcategory": e["subcategory"], "label": classes[e["subcategory"]], "style": style,
                "split": "heldout" if e["unified"] in held else "train"}
        out.append({**base, "skin": None, "image": e["image"]})
        for skin, var in sorted((e.get("skin_variations") or {}).items()):
            if var.get(f"has_img_{style}", False):
                out.append({**base, "skin": skin, "image": var["image"]})
    return out


def build_emoji(root: Path | None = None, force: bool = False) -> Path:
    """Fetch, composite and split the emoji art under `root`; a no-op when already built."""
    root = Path(root) if root else data_dir()
    manifest_path = root / "manifest.json"
    if manifest_path.exists() and not force:
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") == FORMAT_VERSION and manifest.get("packages") == _package_specs():
            logger.info("emoji data already built at %s", root)
            return root
    from tqdm import tqdm

    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tgzs = {spec: _npm_pack(*spec, Path(tmp)) for spec in dict.fromkeys(PACKAGES.values())}
        packs = {style: _read_package(tgzs[spec], style) for style, spec in PACKAGES.items()}
    first = packs[STYLES[0]][0]
    classes = {}
    for e in sorted(first, key=lambda e: e["sort_order"]):
        classes.setdefault(e["subcategory"], len(classes))
    held = _heldout_emoji(first)
    annotations = {o["hexcode"]: o["annotation"] for o in packs["openmoji"][0]}
    records, arrays, counts = [], {s: [] for s in SIZES}, {}
    for style, (meta, files, license_text) in packs.items():
        (root / f"LICENSE-{style}.txt").write_text(f"{LICENSES[style]}\n\n{license_text}")
        if style in LEGACY_STYLES:
            rows = _records(meta, style, classes, held)
        else:
            rows = _keyed_records(first, style, classes, held, _finder(style, files, annotations))
        for rec in tqdm(rows, desc=f"emoji {style}", unit="img"):
            png = files.get(rec.pop("image")) if "image" in rec else _rasterise(rec.pop("svg"))
            if png is None:
                continue
            for s, a in _on_white(png).items():
                arrays[s].append(a)
            records.append(rec)
            counts.setdefault(style, {"train": 0, "heldout": 0})[rec["split"]] += 1
    np.savez_compressed(root / "images.npz", **{f"images{s}": np.stack(arrays[s]) for s in SIZES})
    manifest = {"format": FORMAT_VERSION, "packages": _package_specs(), "licenses": LICENSES,
                "classes": list(classes), "styles": list(STYLES), "records": records,
                "counts": {sp: sum(r["split"] == sp for r in records) for sp in ("train", "heldout")},
                "counts_by_style": counts}
    tmp_manifest = manifest_path.with_suffix(".tmp")
    tmp_manifest.write_text(json.dumps(manifest))
    tmp_manifest.replace(manifest_path)  # written last: a half-built folder is never taken as done
    logger.info("wrote %d images (%s) to %s", len(records), counts, root)
    return root


def _package_specs() -> dict[str, str]:
    return {style: f"{name}@{version}" for style, (name, version) in PACKAGES.items()}


@dataclass
class EmojiData:
    """The built emoji set: images at one size plus their records, the ordered class list and the styles held."""
    images: np.ndarray          # (N, H, W, 3) uint8
    records: list[dict]
    classes: list[str]
    styles: list[str]

    @property
    def labels(self) -> np.ndarray:
        return np.array([r["label"] for r in self.records], dtype=np.int64)

    @property
    def style_ids(self) -> np.ndarray:
        """Each record's style as its index in `styles`."""
        index = {s: k for k, s in enumerate(self.styles)}
        return np.array([index[r["style"]] for r in self.records], dtype=np.int64)

    def indices(self, split: str) -> np.ndarray:
        if split not in ("train", "heldout"):
            raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
        return np.array([i for i, r in enumerate(self.records) if r["split"] == split], dtype=np.int64)

    def tensor(self, idx=None):
        """Images as float tensors in [-1, 1], (N, 3, H, W)."""
        import torch
        x = self.images if idx is None else self.images[idx]
        return torch.from_numpy(x).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def load_emoji(size: int = 32, root: Path | None = None, styles=None) -> EmojiData:
    """The built set at `size`; `styles`: only these styles' images, in this order of style ids (None: all). A
    model reads the styles it was trained on (`model_styles`), so adding a style never moves its numbers."""
    root = Path(root) if root else data_dir()
    if size not in SIZES:
        raise ValueError(f"emoji size must be one of {SIZES}, got {size}")
    manifest_path = root / "manifest.json"
    if not manifest_path.exists():
        raise FileNotFoundError(f"no emoji data at {root}: run `python -m mindmap data emoji` first")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != FORMAT_VERSION:
        raise FileNotFoundError(f"the emoji data at {root} is format {manifest.get('format')}, this version reads "
                                f"{FORMAT_VERSION}: run `python -m mindmap data emoji` to rebuild it")
    held = manifest["styles"]
    styles = list(held if styles is None else styles)
    unknown = [s for s in styles if s not in held]
    if unknown or not styles:
        raise ValueError(f"styles must be a non-empty list of {', '.join(held)}; got {styles}")
    keep = [i for i, r in enumerate(manifest["records"]) if r["style"] in styles]
    with np.load(root / "images.npz", allow_pickle=False) as z:
        images = z[f"images{size}"]
    if len(keep) < len(manifest["records"]):
        images = images[keep]
    return EmojiData(images=images, records=[manifest["records"][i] for i in keep], classes=manifest["classes"],
                     styles=styles)


def model_styles(manifest: dict) -> list[str]:
    """The styles a checkpoint was trained on (its manifest's `styles`; older checkpoints: Twemoji and Noto)."""
    return list(manifest.get("styles") or LEGACY_STYLES)
