"""Published checkpoints: `mindmap convert` on fixtures made with the authors' own code equals their outputs.

Each fixture (tests/fixtures/<family>/, made by tests/fixtures/make_<family>.py against the upstream
commit it records) holds a tiny random model in the authors' exact format and their outputs. The
converted MINDmap model must reproduce every output to 1e-4 (float32).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mindmap.__main__ import main
from mindmap.convert import ConvertError, convert, imagenet_classes
from mindmap.convert.base import sha256
from mindmap.pipeline import Pipeline

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TOL = 1e-4


def fixture(family: str) -> tuple[dict, dict[str, torch.Tensor]]:
    meta = json.loads((FIXTURES / family / "fixture.json").read_text())
    return meta, load_file(FIXTURES / family / "outputs.safetensors")


def convert_llamagen(out: Path, arch: dict | None = None) -> Pipeline:
    meta, _ = fixture("llamagen")
    arch = arch or meta["arch"]
    rc = main(["convert", "llamagen", "--gpt", str(FIXTURES / "llamagen" / "gpt.pt"), "--tokenizer",
               str(FIXTURES / "llamagen" / "vq.pt"), "--arch", json.dumps(arch), "--out", str(out)])
    assert rc == 0
    return Pipeline.from_pretrained(out, device="cpu")


def report(name: str, ours: torch.Tensor, theirs: torch.Tensor) -> float:
    assert ours.shape == theirs.shape, name
    diff = (ours.float() - theirs.float()).abs().max().item()
    print(f"parity {name}: max abs diff {diff:.3g} (reference max {theirs.abs().max().item():.3g})")
    return diff


@pytest.fixture(scope="module")
def llamagen(tmp_path_factory):
    return convert_llamagen(tmp_path_factory.mktemp("convert") / "llamagen-tiny")


@torch.no_grad()
def test_llamagen_equals_authors_code(llamagen):
    _, ref = fixture("llamagen")
    gen, tok = llamagen.generator, llamagen.tokenizer
    codes, labels = ref["codes"], ref["labels"]            # labels: a class and the null class (CFG's row)
    assert report("llamagen GPT logits (teacher forcing)", gen(codes, labels), ref["logits"]) <= TOL
    # The sampler's path: prefill the class, then one code per step through the static KV cache.
    gen.setup_cache(2)
    try:
        steps = [gen.prefill(labels)]
        for i in range(1, 12):
            steps.append(gen.decode_one_token(codes[:, i - 1], torch.tensor([i])))
    finally:
        gen.clear_caches()
    assert report("llamagen GPT logits (KV cache)", torch.stack(steps, 1), ref["logits"][:, :12]) <= TOL
    g = gen.config.grid
    decoded = tok.decoder(tok.post_quant_conv(tok.quantizer.lookup(codes.view(2, g, g))))
    assert report("llamagen VQ decode", decoded, ref["decoded"]) <= TOL
    assert report("llamagen VQ encoder latents", tok.latents(ref["image"]), ref["latents"]) <= TOL
    assert torch.equal(tok.encode(ref["image"]), ref["encoded"])


def test_llamagen_class_token_rotation_is_what_makes_it_equal(tmp_path):
    """The parity test can fail: with MINDmap's own prefix rotation (identity) the logits differ."""
    meta, ref = fixture("llamagen")
    arch = {**meta["arch"], "generator": {**meta["arch"]["generator"], "prefix_rope": "identity"}}
    pipe = convert_llamagen(tmp_path / "identity", arch)
    with torch.no_grad():
        assert (pipe.generator(ref["codes"], ref["labels"]) - ref["logits"]).abs().max() > 1e-2


def test_converted_folder_streams_and_names_its_sources(llamagen):
    manifest = llamagen.manifest
    assert manifest["group"] == "published" and manifest["family"] == "llamagen"
    assert manifest["classes"] == imagenet_classes(10) and manifest["classes"][0] == "tench"
    assert manifest["sources"]["gpt"]["sha256"] == sha256(FIXTURES / "llamagen" / "gpt.pt")
    frames = list(llamagen.stream(**{"class": "Goldfish"}, seed=0, preview_every=16))
    assert len(frames) == 4 and frames[-1].image.shape == (1, 3, 16, 16)
    assert llamagen.controls().values["top_k"] == 64 and llamagen.controls().values["cfg"] == 4.0


def test_imagenet_names_are_unique_and_searchable():
    names = imagenet_classes()
    assert len(names) == 1000 == len(set(names))
    assert names[207] == "Golden Retriever" and any(n.startswith("crane") for n in names)


def _state(path: Path) -> dict:
    return torch.load(path, weights_only=True)


@pytest.mark.parametrize("damage, needle", [
    (lambda sd: sd["model"].pop("norm.weight"), "missing tensor 'norm.weight'"),
    (lambda sd: sd["model"].__setitem__("extra.weight", torch.zeros(3)), "unexpected tensor 'extra.weight'"),
    (lambda sd: sd["model"].__setitem__("output.weight", torch.zeros(64, 32)), "'output.weight' has shape (64, 32)"),
])
def test_convert_names_the_tensor_that_does_not_fit(tmp_path, damage, needle):
    meta, _ = fixture("llamagen")
    sd = _state(FIXTURES / "llamagen" / "gpt.pt")
    damage(sd)
    torch.save(sd, tmp_path / "gpt.pt")
    with pytest.raises(ConvertError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        convert("llamagen", tmp_path / "out", {"gpt": tmp_path / "gpt.pt", "tokenizer": FIXTURES / "llamagen" / "vq.pt"},
                arch=meta["arch"])
    assert not (tmp_path / "out").exists()          # nothing half-written


class Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_convert_refuses_pickles_wrong_files_and_occupied_folders(tmp_path, capsys):
    meta, _ = fixture("llamagen")
    vq = FIXTURES / "llamagen" / "vq.pt"
    torch.save({"model": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(ConvertError, match="not a readable checkpoint"):
        convert("llamagen", tmp_path / "a", {"gpt": tmp_path / "evil.pt", "tokenizer": vq}, arch=meta["arch"])
    assert "this must never run" not in capsys.readouterr().out
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ConvertError, match="expected a .pt"):
        convert("llamagen", tmp_path / "b", {"gpt": tmp_path / "notes.txt", "tokenizer": vq}, arch=meta["arch"])
    with pytest.raises(ConvertError, match="no such file"):
        convert("llamagen", tmp_path / "c", {"gpt": tmp_path / "absent.pt", "tokenizer": vq}, arch=meta["arch"])
    with pytest.raises(ConvertError, match="needs --gpt"):
        convert("llamagen", tmp_path / "d", {"tokenizer": vq}, arch=meta["arch"])
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"x")
    with pytest.raises(ConvertError, match="not a MINDmap checkpoint; not touching it"):
        convert("llamagen", tmp_path / "photos", random_init=True, arch=meta["arch"])
    assert (tmp_path / "photos" / "cat.jpg").read_bytes() == b"x"
    with pytest.raises(ConvertError, match="--size must be one of B, L, XL, XXL"):
        convert("llamagen", tmp_path / "e", random_init=True, size="S")
    assert main(["convert", "llamagen", "--out", str(tmp_path / "f"), "--arch", "{not json"]) == 2
    assert "--arch: not valid JSON" in capsys.readouterr().err


def test_random_init_builds_the_architecture_without_sources(tmp_path):
    meta, _ = fixture("llamagen")
    out = convert("llamagen", tmp_path / "r", random_init=True, arch=meta["arch"], seed=1)
    pipe = Pipeline.from_pretrained(out, device="cpu")
    assert pipe.manifest["random_init"] and "Random weights" in (out / "README.md").read_text()
    assert pipe(**{"class": "tench"}, seed=0).image.shape == (1, 3, 16, 16)
    again = convert("llamagen", tmp_path / "r", random_init=True, arch=meta["arch"], seed=1, force=True)
    assert torch.equal(Pipeline.from_pretrained(again, device="cpu").generator.head.weight, pipe.generator.head.weight)
