"""Continuous tokens (MAR): the KL tokenizer and the masked generator with a diffusion head, tiny random models."""
import pytest
import torch

from mindmap.generators.mar import mar_loss, noise_scheduler
from mindmap.sampling import commit_counts

from conftest import tiny_kl_tokenizer, tiny_mar

N = 64


def test_kl_tokens_round_trip_shapes_and_partial_decode():
    tok = tiny_kl_tokenizer()
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    tokens = tok.tokens(x)
    assert tokens.shape == (2, N, 4) and tok.decode_tokens(tokens).shape == (2, 3, 16, 16)
    known = torch.zeros(2, 8, 8, dtype=torch.bool)
    known[:, :2] = True
    part = tok.decode_partial(tokens, known)
    assert torch.all(part[:, :, 4:] == 0.0) and not torch.all(part[:, :, :4] == 0.0)
    with pytest.raises(ValueError, match="tokens must be"):
        tok.decode_tokens(tokens[:, :10])


def test_head_starts_at_zero_and_the_loss_trains_it():
    model = tiny_mar()
    eps = model.head(torch.randn(5, 4), torch.tensor([1, 10, 100, 500, 999]), torch.randn(5, 64))
    assert torch.equal(eps, torch.zeros(5, 4))                                  # adaLN-zero
    model.train()
    loss = mar_loss(model, torch.randn(3, N, 4), torch.tensor([0, 1, 3]), torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss) and model.head.out.weight.grad.abs().sum() > 0


def test_noise_scheduler_is_cosine_leading_clipped_epsilon():
    from mindmap.generators.mar import TOKEN_RANGE
    sched = noise_scheduler()
    bar = sched.alphas_cumprod
    assert bar[0] > 0.999 and bar[-1] < 1e-6                                   # cosine: alpha_bar(T) ~ 0 ...
    assert abs(bar[500].item() - 0.492) < 0.01                                 # ... and half way at T/2 (linear: 0.08)
    sched.set_timesteps(25)
    assert sched.timesteps[0] == 960 and sched.timesteps[-1] == 0              # leading: one stride before T
    x0, noise = torch.randn(4, 4), torch.randn(4, 4)
    x_t = sched.add_noise(x0, noise, torch.tensor([480] * 4))
    recovered = sched.step(noise, 480, x_t, eta=0.0).pred_original_sample
    assert torch.allclose(recovered, x0, atol=1e-4)                            # the head predicts the noise
    wild = sched.step(torch.full((4, 4), 100.0), 960, x_t, eta=0.0).pred_original_sample
    assert wild.abs().max() == TOKEN_RANGE                                     # x0 clipped to the token range


@pytest.mark.parametrize("diffusion_steps", [1, 25, 250])
def test_reverse_diffusion_stays_in_the_token_range(diffusion_steps):
    # A head whose noise guess is off: with cosine betas alpha_bar(T) ~ 0, and sampling that starts at the
    # last timestep without clipping divides that error by ~0 (tokens in the thousands, a blank image).
    from mindmap.generators.mar import TOKEN_RANGE
    from mindmap.samplers.mar import draw_tokens
    from mindmap.samplers.scaffold import Guidance
    model = tiny_mar()
    torch.nn.init.normal_(model.head.out.weight, std=0.5)
    g = torch.Generator().manual_seed(0)
    unguided = Guidance(torch.zeros(16, dtype=torch.long), model.null_class, cfg=1.0)
    x = draw_tokens(model, torch.randn(16, 64, generator=g), g, diffusion_steps, 1.0, 1.0, unguided)
    assert torch.isfinite(x).all() and x.abs().max() <= TOKEN_RANGE + 1e-4 and x.std() > 0.05


def test_revealed_cells_follow_the_cosine_schedule(pipes):
    mar_pipe = pipes("tiny-mar")
    frames = list(mar_pipe.stream(seed=2, steps=6, diffusion_steps=3, cfg=2.0, batch=2))
    counts = commit_counts("cosine", 6, N)
    assert len(frames) == 6 and frames[-1].schedule == counts and frames[-1].network_calls == 6
    for t, f in enumerate(frames):
        assert int((~f.mask[0]).sum()) == sum(counts[:t + 1]) and int((f.order[0] == t).sum()) == counts[t]
    timing = frames[-1].views["timing"]
    assert timing["transformer_s"] > 0 and timing["head_s"] > 0
    assert frames[-1].image.shape == (2, 3, 16, 16) and not bool(frames[-1].mask.any())


def test_same_seed_same_image_and_temperature_matters(pipes):
    mar_pipe = pipes("tiny-mar")
    a = mar_pipe(seed=3, steps=4, diffusion_steps=4)
    b = mar_pipe(seed=3, steps=4, diffusion_steps=4)
    c = mar_pipe(seed=4, steps=4, diffusion_steps=4)
    hot = mar_pipe(seed=3, steps=4, diffusion_steps=4, temperature=2.0)
    assert torch.equal(a.image, b.image) and not torch.equal(a.image, c.image) and not torch.equal(a.image, hot.image)
    assert not torch.equal(a.order, c.order)                                   # the seed draws the order too


@pytest.mark.parametrize("values, name", [({"steps": 0}, "steps"), ({"steps": N + 1}, "steps"),
                                          ({"diffusion_steps": 0}, "diffusion_steps"),
                                          ({"diffusion_steps": 1000}, "diffusion_steps"),
                                          ({"temperature": 0}, "temperature"), ({"top_k": 5}, "top_k")])
def test_bad_controls_name_the_control(values, name, pipes):
    mar_pipe = pipes("tiny-mar")
    with pytest.raises(ValueError, match=name):
        mar_pipe(**values)
