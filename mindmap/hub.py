"""`python -m mindmap fetch NAME`: download a published generator's files from its hub repository, convert them,
cache the folder. Nothing is downloaded unless a person asks for a model by name.

Offline (no network, or HF_HUB_OFFLINE=1) it stops at once with one line naming the file to place by hand
and the `convert` command to run. Folders land in MINDMAP_MODELS (default ~/.cache/mindmap/models), which
`mindmap.registry` lists beside the shipped models; downloads go to huggingface_hub's own cache.
"""
from __future__ import annotations

import os
import shlex
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .checkpoint import MANIFEST


class FetchError(RuntimeError):
    """A source file could not be downloaded (offline, no such repository or file)."""


@dataclass(frozen=True)
class Hosted:
    family: str
    size: str
    repo: str                      # the hub repository holding the authors' files
    files: dict[str, str | tuple[str, ...]]   # source flag -> file name in `repo`, or the files of a folder flag
    arch: dict | None = None       # architecture overrides (none for the published sizes)

    def convert_command(self, out: Path) -> str:
        def where(name):                # a folder flag takes the downloaded repository's folder
            return self.repo.split("/")[-1] if isinstance(name, tuple) else name
        flags = " ".join(f"--{flag} {shlex.quote(where(name))}" for flag, name in self.files.items())
        return f"python -m mindmap convert {self.family} --size {self.size} {flags} --out {shlex.quote(str(out))}"


HOSTED = {
    **{f"llamagen-{size.lower()}-{px}": Hosted("llamagen", size if px == 256 else f"{size}-{px}",
                                               "FoundationVision/LlamaGen",
                                               {"gpt": f"c2i_{size}_{px}.pt", "tokenizer": "vq_ds16_c2i.pt"})
       for size, px in (("B", 256), ("L", 256), ("B", 384), ("L", 384), ("XL", 384), ("XXL", 384), ("3B", 384))},
    **{f"var-d{d}": Hosted("var", f"d{d}", "FoundationVision/var", {"var": f"var_d{d}.pth",
                                                                   "vae": "vae_ch160v4096z32.pth"})
       for d in (16, 20, 24, 30)},
    # The authors host MAR outside any hub; this mirror holds their state dicts as safetensors (every key and
    # shape is checked at conversion, like any file).
    "mar-b": Hosted("mar", "B", "jadechoghari/mar", {"mar": "mar-base.safetensors", "kl": "kl16.safetensors"}),
    # a diffusers pipeline folder: the components MINDmap reads, each with its config, and the CLIP tokenizer
    "amused-256": Hosted("amused", "256", "amused/amused-256", {"folder": (
        *(f"{part}/{f}" for part in ("vqvae", "transformer") for f in ("config.json",
                                                                     "diffusion_pytorch_model.safetensors")),
        "text_encoder/config.json", "text_encoder/model.safetensors", "scheduler/scheduler_config.json",
        *(f"tokenizer/{f}" for f in ("vocab.json", "merges.txt", "tokenizer_config.json",
                                     "special_tokens_map.json")))}),
}


def models_cache() -> Path:
    """Where fetched (converted) models live."""
    return Path(os.environ.get("MINDMAP_MODELS") or Path.home() / ".cache" / "mindmap" / "models")


def hosted(name: str) -> Hosted:
    if name not in HOSTED:
        raise ValueError(f"unknown published model {name!r}; fetchable: {', '.join(HOSTED)}")
    return HOSTED[name]


def offline_reason(endpoint: str) -> str | None:
    """Why the hub cannot be reached, found in at most a few seconds (None: it answers). huggingface_hub would
    otherwise retry for half a minute before failing."""
    from huggingface_hub import constants
    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    url = urlsplit(endpoint)
    try:
        with socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout=3):
            return None
    except OSError as e:
        return f"no network: {e.strerror or type(e).__name__}"


def fetch(name: str, root: Path | None = None, endpoint: str | None = None, force: bool = False,
          cache_dir: Path | None = None) -> Path:
    """The converted folder of published model `name` under `root` (default `models_cache()`), downloading and
    converting it the first time. `endpoint`: another hub (a mirror, or the tests' local stand-in); `cache_dir`:
    where the downloads go (default huggingface_hub's cache)."""
    entry = hosted(name)
    out = Path(root or models_cache()) / name
    if (out / MANIFEST).is_file() and not force:
        return out
    from huggingface_hub import constants, hf_hub_download
    endpoint = endpoint or constants.ENDPOINT
    def cannot(filename: str, why: str) -> FetchError:
        return FetchError(f"cannot download {filename} from {entry.repo} ({why}); place the files by hand and run: "
                          f"{entry.convert_command(out)}")

    first = next(iter(entry.files.values()))
    reason = offline_reason(endpoint)
    if reason:
        raise cannot(first[0] if isinstance(first, tuple) else first, reason)
    paths = {}
    for flag, names in entry.files.items():
        for filename in (names if isinstance(names, tuple) else (names,)):
            try:
                path = Path(hf_hub_download(entry.repo, filename, endpoint=endpoint, cache_dir=cache_dir,
                                            etag_timeout=5))
            except Exception as e:  # DNS, HTTP and hub errors all end here: say what to do by hand
                raise cannot(filename, type(e).__name__) from None
            # a folder flag gets the snapshot folder the files landed in (their paths inside the repo kept)
            paths[flag] = path.parents[len(Path(filename).parts) - 1] if isinstance(names, tuple) else path
    from .convert import convert
    return convert(entry.family, out, paths, size=entry.size, arch=entry.arch, force=force,
                   command=f"python -m mindmap fetch {name}")
