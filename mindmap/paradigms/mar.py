"""Continuous tokens with a diffusion head (MAR): a random order of cells, revealed in cosine-scheduled groups.

MAR's levers: AR steps (transformer calls) against diffusion steps (head calls per AR step). The naive
baseline reveals one token per transformer call.
"""
import dataclasses

from ..controls import CFG, CFG_SCHEDULE, DIFFUSION_STEPS, STEPS, TEMPERATURE
from ..generators.mar import PRESETS, MARGPT, mar_loss
from ..samplers.mar import sample_mar
from ..viz import schedule_view
from .base import Paradigm, Recipe, View, register


def continuous_tokens(tokenizer, images):
    """The KL autoencoder's scaled latent tokens (B, N, C)."""
    return tokenizer.tokens(images)


CONTROLS = (dataclasses.replace(CFG, help="classifier-free guidance scale on the head's noise (1 = off)"), CFG_SCHEDULE,
            dataclasses.replace(TEMPERATURE, help="scale of the diffusion sampling noise"),
            dataclasses.replace(STEPS, default=lambda m: min(16, m.cells), help="AR steps (transformer calls), cosine"),
            DIFFUSION_STEPS)

PARADIGM = register(Paradigm(
    name="mar", anchor="MAR", tokenizer="kl", components={"generator": MARGPT}, sampler=sample_mar,
    controls=CONTROLS, naive=lambda pipe: {"steps": pipe.cells},
    view=View("Schedule: cells revealed per AR step (each drawn by the diffusion head)", schedule_view),
    sweep=({"steps": 8, "diffusion_steps": 25}, {"steps": 16, "diffusion_steps": 10},
           {"steps": 16, "diffusion_steps": 25}, {"steps": 32, "diffusion_steps": 25}),
    demo_class="face-smiling",
    recipe=Recipe(PRESETS, mar_loss, "continuous-token generator with a diffusion head (MAR recipe)",
                  "Bidirectional transformer over the KL autoencoder's continuous tokens (unrevealed ones replaced by "
                  "a learned mask vector, class as a prefix token, 2D RoPE) giving each cell a condition z; a small "
                  "MLP with AdaLN on z and the timestep predicts the noise of a noised token (DDPM noise-prediction "
                  "loss, cosine betas, each masked token's loss repeated 4 times); cells masked at the cosine "
                  "schedule's share, as the sampler reveals them", encode=continuous_tokens,
                  extra=lambda tok: {"token_dim": tok.token_dim}, metric="noise-prediction MSE"),
))
