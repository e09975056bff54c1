import pytest
import torch

from mindmap.checkpoint import CheckpointError
from mindmap.pipeline import Pipeline
from mindmap.viz import confidence_map, mask_overlay, order_map, panel, save_gif, token_map

from conftest import tiny_tokenizer, write_tiny_checkpoint


def test_tokenizer_shapes_and_partial_decode():
    tok = tiny_tokenizer()
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    codes = tok.encode(x)
    assert codes.shape == (2, 8, 8) and codes.dtype == torch.long
    assert tok.decode(codes).shape == (2, 3, 16, 16)
    known = torch.zeros(2, 8, 8, dtype=torch.bool)
    known[:, :4] = True
    part = tok.decode_partial(codes, known)
    assert torch.all(part[:, :, 8:] == 0.0)          # open rows are grey
    assert not torch.all(part[:, :, :8] == 0.0)
    with pytest.raises(ValueError, match="images must be"):
        tok.encode(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="codes must lie"):
        tok.decode(torch.full((1, 8, 8), 99))


def test_stream_frames_are_consistent(pipes):
    tiny_pipe = pipes("tiny-raster")
    frames = list(tiny_pipe.stream(preview_every=4, **{"class": "food-fruit"}, seed=3, cfg=2.0))
    assert len(frames) == 16 and frames[-1].done
    prev = None
    for f in frames:
        decided = ~f.mask[0]
        assert decided.sum() == f.step == f.network_calls
        assert torch.all(f.tokens[0][decided] >= 0) and torch.all(f.tokens[0][~decided] == -1)
        assert torch.all(torch.isnan(f.confidence[0][~decided]))
        assert torch.all((f.confidence[0][decided] > 0) & (f.confidence[0][decided] <= 1))
        if prev is not None:                          # committed cells never change
            was = ~prev.mask[0]
            assert torch.equal(f.tokens[0][was], prev.tokens[0][was])
        prev = f
    order = frames[-1].order[0].flatten()
    assert torch.equal(order, torch.arange(64))      # raster order
    assert frames[-1].image.shape == (1, 3, 16, 16)


def test_same_seed_same_image_other_seed_other_image(pipes):
    tiny_pipe = pipes("tiny-raster")
    a = tiny_pipe(**{"class": "face-smiling"}, seed=11, temperature=1.5)
    b = tiny_pipe(**{"class": "face-smiling"}, seed=11, temperature=1.5)
    c = tiny_pipe(**{"class": "face-smiling"}, seed=12, temperature=1.5)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.image, b.image)
    assert not torch.equal(a.tokens, c.tokens)


def test_naive_sampler_draws_the_same_codes(pipes):
    tiny_pipe = pipes("tiny-raster")
    real = tiny_pipe(**{"class": "animal-mammal"}, seed=5, cfg=3.0, top_k=10, top_p=0.9, batch=2)
    naive = tiny_pipe(**{"class": "animal-mammal"}, seed=5, cfg=3.0, top_k=10, top_p=0.9, batch=2, cached=False)
    assert torch.equal(real.tokens, naive.tokens)
    assert real.network_calls == naive.network_calls == 64


def test_top_k_one_is_greedy(pipes):
    tiny_pipe = pipes("tiny-raster")
    a = tiny_pipe(seed=1, top_k=1)
    b = tiny_pipe(seed=2, top_k=1)
    assert torch.equal(a.tokens, b.tokens)           # no randomness left


@pytest.mark.parametrize("values, name", [
    ({"cfg": 0.5}, "cfg"), ({"cfg": float("nan")}, "cfg"), ({"temperature": 0}, "temperature"),
    ({"top_k": -1}, "top_k"), ({"top_k": 2.5}, "top_k"), ({"top_p": 1.5}, "top_p"), ({"seed": -1}, "seed"),
    ({"seed": "3"}, "seed"), ({"batch": 0}, "batch"), ({"batch": 1000}, "batch"), ({"class": "nope"}, "class"),
    ({"steps": 8}, "steps"), ({"cfg": True}, "cfg"),
])
def test_bad_controls_raise_naming_the_control(values, name, pipes):
    tiny_pipe = pipes("tiny-raster")
    with pytest.raises(ValueError, match=name):
        tiny_pipe(**values)


def test_save_load_round_trip(tmp_path, pipes):
    tiny_pipe = pipes("tiny-raster")
    folder = write_tiny_checkpoint(tmp_path / "copy")
    again = Pipeline.from_pretrained(folder, device="cpu")
    for a, b in zip(tiny_pipe.generator.state_dict().values(), again.generator.state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(tiny_pipe(seed=4).tokens, again(seed=4).tokens)


def test_missing_and_corrupt_checkpoints_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="mindmap.json"):
        Pipeline.from_pretrained(tmp_path)
    folder = write_tiny_checkpoint(tmp_path / "bad")
    weights = folder / "generator" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="generator"):
        Pipeline.from_pretrained(folder)
    weights.unlink()
    with pytest.raises(CheckpointError, match="diffusion_pytorch_model.safetensors: missing"):
        Pipeline.from_pretrained(folder)
    (folder / "mindmap.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        Pipeline.from_pretrained(folder)



def test_non_finite_weights_are_refused_at_load_naming_the_tensor(tmp_path):
    from safetensors.torch import load_file, save_file
    folder = write_tiny_checkpoint(tmp_path / "nan")
    weights = folder / "generator" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(weights)
    name = sorted(k for k, v in tensors.items() if v.is_floating_point() and v.ndim == 2)[0]
    tensors[name][0, 0] = float("inf")                   # a valid file whose numbers are corrupt
    save_file(tensors, weights)
    with pytest.raises(CheckpointError, match=f"diffusion_pytorch_model.safetensors: tensor '{name}' holds NaN or "
                                              "infinite values"):
        Pipeline.from_pretrained(folder)


def test_api_takes_numpy_and_0d_scalars_and_checks_preview_every(pipes):
    import numpy as np
    pipe = pipes("tiny-masked")
    plain = pipe(**{"class": pipe.classes[0]}, seed=3, cfg=2.0, steps=4)
    for seed, cfg, steps in ((np.int64(3), np.float32(2.0), torch.tensor(4)), (torch.tensor(3), np.float64(2.0), 4)):
        frame = pipe(**{"class": pipe.classes[0]}, seed=seed, cfg=cfg, steps=steps)
        assert torch.equal(frame.tokens, plain.tokens)
    with pytest.raises(ValueError, match=r"steps must be an integer in \[1, 64\], got array"):
        pipe(**{"class": pipe.classes[0]}, steps=np.array([4, 5]))
    for bad in (-1, "a", 1.5, True):
        with pytest.raises(ValueError, match="preview_every must be an integer >= 0"):
            list(pipe.stream(**{"class": pipe.classes[0]}, preview_every=bad))
    assert len(list(pipe.stream(**{"class": pipe.classes[0]}, steps=4, preview_every=np.int64(2)))) == 2


def test_viz_renders(tmp_path, pipes):
    tiny_pipe = pipes("tiny-raster")
    frames = list(tiny_pipe.stream(preview_every=16, seed=0))
    mid = frames[1]
    for img in (order_map(mid), confidence_map(mid), mask_overlay(mid), token_map(mid.tokens[0], 32)):
        assert img.size == (256, 256)
    assert order_map(mid).getpixel((250, 250)) == (128, 128, 128)      # open cell grey
    assert order_map(frames[-1]).getpixel((250, 250)) != (128, 128, 128)
    assert panel(mid).width > 3 * 192
    save_gif(frames, tmp_path / "run.gif")
    from PIL import Image
    with Image.open(tmp_path / "run.gif") as gif:
        assert gif.n_frames == len(frames)


def test_bfloat16_generators_stay_close_to_float32_and_every_paradigm_runs(tiny_root):
    """The cheaper decode step on a CPU: generator weights and activations in bfloat16 (the tokenizer stays float32).
    The float32 path is the reference: teacher-forced next-code distributions (guided as sampled) stay within a
    total-variation distance of 0.1 per code on the tiny raster model."""
    from mindmap.sampling import cfg_mix
    ref = Pipeline.from_pretrained(tiny_root / "tiny-raster", device="cpu")
    low = Pipeline.from_pretrained(tiny_root / "tiny-raster", device="cpu", dtype="bfloat16")
    assert next(low.generator.parameters()).dtype == torch.bfloat16
    assert next(low.tokenizer.parameters()).dtype == torch.float32
    with torch.inference_mode():
        codes = ref(**{"class": ref.classes[0]}, seed=0, batch=4).tokens.flatten(1)
        labels = torch.tensor([0, 1, 2, 3])
        null = torch.full_like(labels, ref.generator.null_class)

        def probs(pipe):
            g = pipe.generator
            return cfg_mix(torch.cat([g(codes, labels), g(codes, null)]).float(), 3.0).softmax(-1)
        tv = 0.5 * (probs(ref) - probs(low)).abs().sum(-1)
    assert 0 < float(tv.max()) < 0.1, float(tv.max())
    for name in ("tiny-raster", "tiny-masked", "tiny-scale", "tiny-mar", "tiny-depth", "tiny-text"):
        pipe = Pipeline.from_pretrained(tiny_root / name, device="cpu", dtype="bfloat16")
        request = {"prompt": "red apple"} if name == "tiny-text" else {"class": pipe.classes[0]}
        frame = pipe(**request, seed=1, **({"steps": 4, "diffusion_steps": 2} if name == "tiny-mar" else {}))
        assert frame.image.dtype == torch.float32 and torch.isfinite(frame.image).all(), name
    with pytest.raises(ValueError, match="dtype must be one of float32, bfloat16, got 'float16'"):
        Pipeline.from_pretrained(tiny_root / "tiny-raster", device="cpu", dtype="float16")


def test_a_compiled_decode_step_keeps_the_codes_and_only_raster_models_take_it(tiny_root):
    """torch.compile of the raster decode step (opt-in: `bench --compile`): the eager step is the reference; on the
    same seeds the compiled one draws the same codes with next-code logits within float32 rounding."""
    ref = Pipeline.from_pretrained(tiny_root / "tiny-raster", device="cpu")
    fast = Pipeline.from_pretrained(tiny_root / "tiny-raster", device="cpu", compile=True)
    request = {"class": ref.classes[1], "batch": 2}
    for seed in (0, 1):
        a, b = ref(**request, seed=seed), fast(**request, seed=seed)
        assert torch.equal(a.tokens, b.tokens) and torch.allclose(a.confidence, b.confidence, atol=1e-5)
    g = fast.generator
    assert getattr(g.decode_one_token, "_torchdynamo_orig_callable", None) is not None     # really compiled
    with pytest.raises(ValueError, match="compile: only raster generators have a compiled decode step; tiny-masked"):
        Pipeline.from_pretrained(tiny_root / "tiny-masked", device="cpu", compile=True)
