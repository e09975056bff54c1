"""Emoji art from the npm registry: Twemoji and Noto 64x64 PNGs, composited on white.

`build_emoji` fetches two pinned packages with `npm pack`, reads their `emoji.json` (name, short
names, category, subcategory), composites every image (skin-tone variants included) on white and
writes 32x32 and 64x64 uint8 arrays plus a manifest. The held-out split is by emoji (all styles and
skin tones of one emoji land on the same side), stratified by subcategory, decided by a hash of the
emoji's code points so it never moves. A rerun with the manifest in place does nothing.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

# Pinned so that the data, the split and the class list never move under a checkpoint.
PACKAGES = {"twitter": ("emoji-datasource-twitter", "16.0.0"), "google": ("emoji-datasource-google", "16.0.0")}
LICENSES = {
    "twitter": "Twemoji graphics (c) Twitter, Inc. and other contributors, CC-BY 4.0",
    "google": "Noto Emoji images (c) Google LLC, Apache License 2.0",
}
SIZES = (32, 64)
HELDOUT_FRACTION = 0.1
FORMAT_VERSION = 1


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
    """The package's emoji.json, its 64 px PNGs by file name, and its LICENSE text."""
    pngs, meta, license_text = {}, None, ""
    prefix = f"package/img/{style}/64/"
    with tarfile.open(tgz, "r:gz") as tar:
        for member in tar:
            if not member.isfile():
                continue
            if member.name == "package/emoji.json":
                meta = json.load(tar.extractfile(member))
            elif member.name == "package/LICENSE":
                license_text = tar.extractfile(member).read().decode("utf-8", "replace")
            elif member.name.startswith(prefix) and member.name.endswith(".png"):
                pngs[member.name[len(prefix):]] = tar.extractfile(member).read()
    if meta is None:
        raise RuntimeError(f"{tgz.name} has no package/emoji.json")
    return meta, pngs, license_text


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
        packs = {style: _read_package(_npm_pack(*spec, Path(tmp)), style) for style, spec in PACKAGES.items()}
    first = next(iter(packs.values()))[0]
    classes = {}
    for e in sorted(first, key=lambda e: e["sort_order"]):
        classes.setdefault(e["subcategory"], len(classes))
    held = _heldout_emoji(first)
    records, arrays = [], {s: [] for s in SIZES}
    for style, (meta, pngs, license_text) in packs.items():
        (root / f"LICENSE-{style}.txt").write_text(f"{LICENSES[style]}\n\n{license_text}")
        for rec in tqdm(_records(meta, style, classes, held), desc=f"emoji {style}", unit="img"):
            png = pngs.get(rec.pop("image"))
            if png is None:
                continue
            for s, a in _on_white(png).items():
                arrays[s].append(a)
            records.append(rec)
    np.savez_compressed(root / "images.npz", **{f"images{s}": np.stack(arrays[s]) for s in SIZES})
    manifest = {"format": FORMAT_VERSION, "packages": _package_specs(), "licenses": LICENSES,
                "classes": list(classes), "records": records,
                "counts": {sp: sum(r["split"] == sp for r in records) for sp in ("train", "heldout")}}
    tmp_manifest = manifest_path.with_suffix(".tmp")
    tmp_manifest.write_text(json.dumps(manifest))
    tmp_manifest.replace(manifest_path)  # written last: a half-built folder is never taken as done
    logger.info("wrote %d images (%s) to %s", len(records), manifest["counts"], root)
    return root


def _package_specs() -> dict[str, str]:
    return {style: f"{name}@{version}" for style, (name, version) in PACKAGES.items()}


@dataclass
class EmojiData:
    """The built emoji set: images at one size plus their records and the ordered class list."""
    images: np.ndarray          # (N, H, W, 3) uint8
    records: list[dict]
    classes: list[str]

    @property
    def labels(self) -> np.ndarray:
        return np.array([r["label"] for r in self.records], dtype=np.int64)

    def indices(self, split: str) -> np.ndarray:
        if split not in ("train", "heldout"):
            raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
        return np.array([i for i, r in enumerate(self.records) if r["split"] == split], dtype=np.int64)

    def tensor(self, idx=None):
        """Images as float tensors in [-1, 1], (N, 3, H, W)."""
        import torch
        x = self.images if idx is None else self.images[idx]
        return torch.from_numpy(x).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def load_emoji(size: int = 32, root: Path | None = None) -> EmojiData:
    root = Path(root) if root else data_dir()
    if size not in SIZES:
        raise ValueError(f"emoji size must be one of {SIZES}, got {size}")
    manifest_path = root / "manifest.json"
    if not manifest_path.exists():
        raise FileNotFoundError(f"no emoji data at {root}: run `python -m mindmap data emoji` first")
    manifest = json.loads(manifest_path.read_text())
    with np.load(root / "images.npz", allow_pickle=False) as z:
        images = z[f"images{size}"]
    return EmojiData(images=images, records=manifest["records"], classes=manifest["classes"])
