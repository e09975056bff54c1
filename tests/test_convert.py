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


def convert_fixture(family: str, files: dict[str, str], out: Path, arch: dict | None = None) -> Pipeline:
    """`python -m mindmap convert FAMILY` on a fixture's files (flag -> file name), then load the folder."""
    meta, _ = fixture(family)
    args = ["convert", family, "--arch", json.dumps(arch or meta["arch"]), "--out", str(out)]
    for flag, name in files.items():
        args += [f"--{flag}", str(FIXTURES / family / name)]
    assert main(args) == 0
    return Pipeline.from_pretrained(out, device="cpu")


def convert_llamagen(out: Path, arch: dict | None = None) -> Pipeline:
    return convert_fixture("llamagen", {"gpt": "gpt.pt", "tokenizer": "vq.pt"}, out, arch)


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


@pytest.fixture(scope="module")
def var(tmp_path_factory):
    return convert_fixture("var", {"var": "var.pth", "vae": "vae.pth"}, tmp_path_factory.mktemp("convert") / "var-tiny")


@torch.no_grad()
def test_var_equals_authors_code(var):
    meta, ref = fixture("var")
    gen, tok = var.generator, var.tokenizer
    scales, labels = meta["scales"], ref["labels"]                   # labels: a class and the null class
    codes = [ref[f"codes_{s}"].view(2, s, s) for s in scales]
    assert report("VAR next-scale inputs", tok.teacher_inputs(codes), ref["inputs"]) <= TOL
    assert report("VAR logits, every scale (teacher forcing)", gen(ref["inputs"], labels), ref["logits"]) <= TOL
    # The sampler's path: one scale per call, the coarser scales in the KV cache.
    gen.setup_cache(2)
    try:
        steps = []
        for k, sl in enumerate(gen.slices):
            x = gen.embed(labels, None if k == 0 else ref["inputs"][:, sl.start - 1:sl.stop - 1], sl.start)
            steps.append(gen.logits(x, labels, torch.arange(sl.start, sl.stop)))
    finally:
        gen.clear_caches()
    assert report("VAR logits, every scale (KV cache)", torch.cat(steps, 1), ref["logits"]) <= TOL
    assert report("VAR VQVAE running sum f_hat", tok.f_hat(codes), ref["f_hat"]) <= TOL
    assert report("VAR VQVAE decode (unclamped)", tok.decoder(tok.post_quant_conv(ref["f_hat"])), ref["unclamped"]) <= TOL
    assert report("VAR VQVAE decode", tok.decode(codes), ref["decoded"]) <= TOL
    encoded = tok.encode(ref["image"])
    assert all(torch.equal(e.flatten(1), ref[f"encoded_{s}"]) for e, s in zip(encoded, scales))


def test_var_adaln_rewrite_is_what_makes_it_equal():
    """The parity test can fail: VAR's AdaLN rows taken in their own order give other logits."""
    import dataclasses
    from mindmap.convert import var as family
    from mindmap.convert.base import Mapping
    from mindmap.generators.scale import ScaleGPT
    meta, ref = fixture("var")
    state = family.prepare_var(torch.load(FIXTURES / "var" / "var.pth", weights_only=True), "var.pth")
    rewrite = (family.adaln_weight, family.adaln_bias)
    as_is = Mapping([dataclasses.replace(r, transform=None) if r.transform in rewrite else r
                     for r in family.VAR_MAPPING.rules], family.VAR_MAPPING.ignore)
    model = as_is.load(state, ScaleGPT(**{**family.VAR, **meta["arch"]["generator"]}), "var.pth")
    with torch.no_grad():
        assert (model(ref["inputs"], ref["labels"]) - ref["logits"]).abs().max() > 1e-2


@pytest.fixture(scope="module")
def mar(tmp_path_factory):
    return convert_fixture("mar", {"mar": "checkpoint-last.pth", "kl": "kl.ckpt"},
                           tmp_path_factory.mktemp("convert") / "mar-tiny")


@torch.no_grad()
def test_mar_equals_authors_code(mar):
    _, ref = fixture("mar")
    gen, tok = mar.generator, mar.tokenizer
    cond = gen.condition(ref["tokens"], ref["known"], ref["labels"])        # labels: a class and fake_latent
    assert report("MAR encoder/decoder conditions (fixed tokens and order)", cond, ref["cond"]) <= TOL
    # It can fail: the class in the second row instead of MAR's fake_latent (MINDmap's null class) is another input.
    assert (gen.condition(ref["tokens"], ref["known"], ref["labels"][:1].repeat(2))[1] - ref["cond"][1]).abs().max() > 1e-2
    head = gen.head.outputs(ref["noise"], ref["steps"], ref["head_cond"])
    assert report("MAR diffusion head output (noise and learned variance)", head, ref["head"]) <= TOL
    assert torch.equal(gen.head(ref["noise"], ref["steps"], ref["head_cond"]), head[:, :gen.config.token_dim])
    assert report("MAR KL-16 decoder image", tok.decode(ref["latents"]).sample, ref["decoded"]) <= TOL
    assert report("MAR KL-16 encoder posterior mean", tok.encode(ref["image"]).latent_dist.mode(), ref["mean"]) <= TOL


def test_mar_converted_samples_and_refuses_ragged_rows(mar):
    frame = mar(**{"class": "tench"}, seed=0, steps=4, diffusion_steps=3)
    assert frame.image.shape == (1, 3, 16, 16) and torch.isfinite(frame.image).all() and frame.network_calls == 4
    assert mar.manifest["defaults"]["cfg"] == 3.0                          # the tiny width is none of B / L / H
    known = torch.zeros(2, 64, dtype=torch.bool)
    known[0, :3] = True
    with pytest.raises(ValueError, match="same number of tokens"):
        mar.generator.condition(torch.zeros(2, 64, 4), known, torch.tensor([0, 1]))


def convert_amused(out: Path, arch: dict | None = None) -> Pipeline:
    """`python -m mindmap convert amused --folder` on the fixture's diffusers pipeline folder (its own configs)."""
    args = ["convert", "amused", "--folder", str(FIXTURES / "amused" / "pipeline"), "--out", str(out)]
    assert main(args + (["--arch", json.dumps(arch)] if arch else [])) == 0
    return Pipeline.from_pretrained(out, device="cpu")


@pytest.fixture(scope="module")
def amused(tmp_path_factory):
    return convert_amused(tmp_path_factory.mktemp("convert") / "amused-tiny")


def amused_logits(pipe: Pipeline, inputs: torch.Tensor, cfg: float = 10.0) -> torch.Tensor:
    """The generator's logits for the fixture's prompt on the rows MINDmap's masked sampler builds: [prompt; empty]."""
    from mindmap.samplers.scaffold import Guidance
    meta, _ = fixture("amused")
    guide = Guidance(pipe.text_condition(meta["prompt"]), pipe.generator.null_class, cfg)
    return pipe.generator(guide.double(inputs.flatten(1)), guide.rows)


@torch.no_grad()
def test_amused_equals_authors_code(amused):
    meta, ref = fixture("amused")
    cond = amused.text_condition(meta["prompt"])
    assert report("aMUSEd CLIP penultimate states (prompt)", cond.states, ref["prompt_states"]) <= TOL
    assert report("aMUSEd CLIP pooled embedding (prompt)", cond.pooled, ref["prompt_pooled"]) <= TOL
    assert report("aMUSEd CLIP states (empty prompt, CFG's row)", cond.unconditional.states, ref["empty_states"]) <= TOL
    assert report("aMUSEd CLIP pooled (empty prompt)", cond.unconditional.pooled, ref["empty_pooled"]) <= TOL
    theirs = torch.cat([ref["logits_cond"], ref["logits_uncond"]]).flatten(2).transpose(1, 2)
    assert report("aMUSEd UVit2D logits (half-masked codes, prompt and empty rows)", amused_logits(amused, ref["inputs"]),
                  theirs) <= TOL
    decoded = (amused.tokenizer.decode(ref["codes"]) + 1) / 2          # MINDmap's [-1, 1] against aMUSEd's [0, 1]
    assert report("aMUSEd VQ decode", decoded, ref["decoded"]) <= TOL
    assert torch.equal(amused.tokenizer.encode(ref["image"] * 2 - 1), ref["encoded"])
    assert amused.generator.mask_id == meta["mask_token_id"] and amused.generator.micro.tolist() == meta["micro_conds"]


@torch.no_grad()
def test_amused_switches_are_what_make_it_equal(tmp_path):
    """It can fail: MINDmap's own VQ switches (cosine lookup, [-1, 1] pixels) on aMUSEd's weights give other codes
    and another picture, and the learned-empty-prompt rows are not aMUSEd's unconditional rows."""
    _, ref = fixture("amused")
    wrong = convert_amused(tmp_path / "w", {"tokenizer": {"lookup": "cosine", "pixels": "signed"}})
    assert not torch.equal(wrong.tokenizer.encode(ref["image"] * 2 - 1), ref["encoded"])
    assert (wrong.tokenizer.decode(ref["codes"]) - (ref["decoded"] * 2 - 1)).abs().max() > 1e-2
    cond = wrong.text_condition("a red fox")
    cond.unconditional = None                          # CFG's second row would then repeat the prompt
    from mindmap.samplers.scaffold import Guidance
    guide = Guidance(cond, None, 10.0)
    uncond = wrong.generator(guide.double(ref["inputs"].flatten(1)), guide.rows)[1]
    assert (uncond - ref["logits_uncond"][0].flatten(1).t()).abs().max() > 1e-2


def test_amused_samples_streams_and_refuses_what_it_cannot_read(amused, tmp_path):
    frames = list(amused.stream(prompt="a red fox", seed=0, steps=4))
    assert len(frames) == 4 and [f.network_calls for f in frames] == [1, 2, 3, 4]
    final = frames[-1]
    assert final.image.shape == (1, 3, 16, 16) and final.tokens.min() >= 0 and final.tokens.max() < 64
    assert torch.equal(amused(prompt="a red fox", seed=0, steps=4).tokens, final.tokens)     # same seed, same image
    assert amused.manifest["defaults"]["steps"] == 12 and amused.manifest["conditioning"] == "text"
    with pytest.raises(ValueError, match="prompt must not be empty"):
        amused(prompt="   ", seed=0)
    with pytest.raises(TypeError, match="CLIP"):
        amused.generator(torch.zeros(1, 64, dtype=torch.long), torch.tensor([0]))
    import shutil
    bad = tmp_path / "pipe"
    shutil.copytree(FIXTURES / "amused" / "pipeline", bad)
    (bad / "transformer" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(ConvertError, match="has no transformer/diffusion_pytorch_model.safetensors"):
        convert("amused", tmp_path / "o", {"folder": bad})
    shutil.copytree(FIXTURES / "amused" / "pipeline" / "transformer", bad / "transformer", dirs_exist_ok=True)
    shutil.copy(FIXTURES / "amused" / "pipeline" / "vqvae" / "config.json", bad / "transformer" / "config.json")
    with pytest.raises(ConvertError, match="a 'VQModel' config, expected 'UVit2DModel'"):
        convert("amused", tmp_path / "o", {"folder": bad})
    assert not (tmp_path / "o").exists()


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
    with pytest.raises(ConvertError, match="--size must be one of B, L, B-384, L-384, XL-384"):
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


def test_fetch_downloads_from_the_hub_converts_and_caches(tmp_path, monkeypatch):
    from hubstandin import HubStandIn
    from mindmap.hub import HOSTED, Hosted, fetch
    from mindmap.registry import list_models
    meta, ref = fixture("llamagen")
    repo = "someone/llamagen-tiny"
    files = {(repo, "c2i_tiny.pt"): (FIXTURES / "llamagen" / "gpt.pt").read_bytes(),
             (repo, "vq_tiny.pt"): (FIXTURES / "llamagen" / "vq.pt").read_bytes()}
    monkeypatch.setitem(HOSTED, "llamagen-tiny", Hosted("llamagen", "B", repo, {"gpt": "c2i_tiny.pt",
                                                                               "tokenizer": "vq_tiny.pt"}, meta["arch"]))
    monkeypatch.setenv("MINDMAP_MODELS", str(tmp_path / "models"))
    with HubStandIn(files) as hub:
        out = fetch("llamagen-tiny", endpoint=hub.endpoint, cache_dir=tmp_path / "downloads")
        assert sorted(p for m, p in hub.requests if m == "GET") == [f"/{repo}/resolve/main/c2i_tiny.pt",
                                                                     f"/{repo}/resolve/main/vq_tiny.pt"]
        n = len(hub.requests)
        assert fetch("llamagen-tiny", endpoint=hub.endpoint) == out and len(hub.requests) == n   # cached: no request
    assert out == tmp_path / "models" / "llamagen-tiny"
    assert json.loads((out / "mindmap.json").read_text())["sources"]["tokenizer"]["sha256"] == sha256(
        FIXTURES / "llamagen" / "vq.pt")
    assert "python -m mindmap fetch llamagen-tiny" in (out / "README.md").read_text()
    assert "llamagen-tiny" in [m.name for m in list_models()]           # listed beside the shipped models
    with torch.no_grad():
        pipe = Pipeline.from_pretrained(out, device="cpu")
        assert (pipe.generator(ref["codes"], ref["labels"]) - ref["logits"]).abs().max() <= TOL


def test_fetch_amused_downloads_a_pipeline_folder(tmp_path, monkeypatch):
    """aMUSEd's source is a diffusers folder: every file fetch names is downloaded into one snapshot, which is
    converted; the stand-in hub serves the fixture under the real repository's name and layout."""
    from hubstandin import HubStandIn
    from mindmap.hub import HOSTED, FetchError, fetch
    meta, ref = fixture("amused")
    names = HOSTED["amused-256"].files["folder"]
    root = FIXTURES / "amused" / "pipeline"
    files = {("amused/amused-256", name): (root / name).read_bytes() for name in names}
    monkeypatch.setenv("MINDMAP_MODELS", str(tmp_path / "models"))
    with HubStandIn(files) as hub:
        out = fetch("amused-256", endpoint=hub.endpoint, cache_dir=tmp_path / "downloads")
        assert sorted(p for m, p in hub.requests if m == "GET") == sorted(
            f"/amused/amused-256/resolve/main/{name}" for name in names)
    pipe = Pipeline.from_pretrained(out, device="cpu")
    with torch.no_grad():
        theirs = torch.cat([ref["logits_cond"], ref["logits_uncond"]]).flatten(2).transpose(1, 2)
        assert (amused_logits(pipe, ref["inputs"]) - theirs).abs().max() <= TOL
    with pytest.raises(FetchError, match=r"cannot download vqvae/config.json from amused/amused-256 \(no network.*"
                                         r"python -m mindmap convert amused --size 256 --folder amused-256 --out"):
        fetch("amused-256", root=tmp_path / "other", endpoint="http://127.0.0.1:9")


def test_fetch_offline_stops_at_once_with_one_line(tmp_path):
    import subprocess
    import sys
    env = {**__import__("os").environ, "HF_HUB_OFFLINE": "1", "MINDMAP_MODELS": str(tmp_path)}
    run = subprocess.run([sys.executable, "-m", "mindmap", "fetch", "llamagen-b-256"], capture_output=True, text=True,
                         env=env, timeout=60, cwd=Path(__file__).resolve().parent.parent)
    assert run.returncode == 3 and run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert "c2i_B_256.pt" in lines[0] and "python -m mindmap convert llamagen --size B --gpt c2i_B_256.pt" in lines[0]
    assert not any(tmp_path.iterdir())


def test_fetch_unreachable_hub_and_unknown_names(tmp_path):
    from mindmap.hub import FetchError, fetch
    with pytest.raises(FetchError, match="no network"):
        fetch("llamagen-b-256", root=tmp_path, endpoint="http://127.0.0.1:9")
    with pytest.raises(ValueError, match="fetchable: llamagen-b-256"):
        fetch("llamagen-z-999", root=tmp_path)


@pytest.mark.parametrize("family, controls", [("llamagen", {"class": "tench"}), ("var", {"class": "tench"}),
                                              ("mar", {"class": "tench", "steps": 4, "diffusion_steps": 3}),
                                              ("amused", {"prompt": "a red fox", "steps": 4})])
def test_bf16_generator_samples(family, controls, request):
    """What a GPU run does (generator in bf16, tokenizer and text encoder in float32), here on the CPU, for every
    family."""
    pipe = request.getfixturevalue(family)
    pipe.generator.to(torch.bfloat16)
    try:
        frame = pipe(seed=0, **controls)
    finally:
        pipe.generator.to(torch.float32)
    assert torch.isfinite(frame.image).all() and frame.image.shape[-1] == 16
    if family != "mar":
        assert frame.tokens.min() >= 0 and frame.tokens.max() < 64
