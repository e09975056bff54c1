"""MAR (Li et al. 2024): the KL-16 autoencoder and MAR-B/L/H on the MAR paradigm (continuous tokens, diffusion head).

The tokenizer is MINDmap's `KLTokenizer` (diffusers' AutoencoderKL) with attention at the encoder's
lowest resolution and latents times 0.2325. The generator is `MARGPT` in its "mae" layout: an MAE
encoder over a buffer of 64 class slots and the revealed tokens, a decoder over every cell, timm ViT
blocks (`nn.VIT`), learned position embeddings, and the SimpleMLPAdaLN head with its 256-channel
timestep embedding, affine LayerNorms and learned variance. The class embedding gains the
unconditional `fake_latent` as its last row, MINDmap's null class.

Source layout (LTH14/mar, `models/vae.py`, `models/mar.py`, `models/diffloss.py`): `kl16.ckpt` holds
"model"; `checkpoint-last.pth` holds "model" and "model_ema", of which the authors sample with the EMA.
"""
from __future__ import annotations

import torch

from ..generators.mar import MARGPT
from ..tokenizers.kl import KLTokenizer
from .base import ConvertError, Mapping, Rule, ldm_autoencoder_rules, split_attention_rules
from .families import Family, Source, register

LEVELS = 5
KL16 = dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * (LEVELS - 1) + (
                "AttnDownEncoderBlock2D",), up_block_types=("UpDecoderBlock2D",) * LEVELS,
            block_out_channels=(128, 128, 256, 256, 512), layers_per_block=2, latent_channels=16, norm_num_groups=32,
            sample_size=256, scaling_factor=0.2325)
MAR = dict(token_dim=16, num_classes=1000, grid=16, class_dropout=0.1, dropout=0.0, num_train_timesteps=1000,
           layout="mae", buffer_size=64, head_time_dim=256, head_norm_affine=True, learn_sigma=True)
# width, encoder = decoder layers, heads, head width, head blocks
WIDTHS = {"B": (768, 12, 12, 1024, 6), "L": (1024, 16, 16, 1280, 8), "H": (1280, 20, 16, 1536, 12)}


def kl_mapping(arch: dict) -> Mapping:
    return Mapping([*ldm_autoencoder_rules(len(arch["block_out_channels"]), split_attention_rules),
                    Rule(r"(quant_conv|post_quant_conv)\.(weight|bias)", r"\1.\2")])


def prepare_mar(state: dict, label: str) -> dict:
    """The class embedding with `fake_latent` (the unconditional class) as its last row."""
    state = dict(state)
    for key in ("class_emb.weight", "fake_latent"):
        if key not in state:
            raise ConvertError(f"{label}: missing tensor {key!r} (a different model?)")
    classes, fake = state.pop("class_emb.weight"), state.pop("fake_latent")
    if fake.shape != (1, classes.shape[1]):
        raise ConvertError(f"{label}: tensor 'fake_latent' has shape {tuple(fake.shape)}, the class embedding "
                           f"needs (1, {classes.shape[1]})")
    state["class_emb_with_null"] = torch.cat([classes, fake])
    return state


def _vit_rules(ours: str, theirs: str) -> list[Rule]:
    return [Rule(rf"{ours}\.blocks\.(\d+)\.attn_norm\.(weight|bias)", rf"{theirs}_blocks.\1.norm1.\2"),
            Rule(rf"{ours}\.blocks\.(\d+)\.attn\.wqkv\.(weight|bias)", rf"{theirs}_blocks.\1.attn.qkv.\2"),
            Rule(rf"{ours}\.blocks\.(\d+)\.attn\.wo\.(weight|bias)", rf"{theirs}_blocks.\1.attn.proj.\2"),
            Rule(rf"{ours}\.blocks\.(\d+)\.ffn_norm\.(weight|bias)", rf"{theirs}_blocks.\1.norm2.\2"),
            Rule(rf"{ours}\.blocks\.(\d+)\.ffn\.(fc1|fc2)\.(weight|bias)", rf"{theirs}_blocks.\1.mlp.\2.\3"),
            Rule(rf"{ours}\.norm\.(weight|bias)", rf"{theirs}_norm.\1")]


HEAD = "diffloss.net"
MAR_MAPPING = Mapping(
    rules=[Rule(r"cls_emb\.weight", "class_emb_with_null"),
           Rule(r"(z_proj|z_proj_ln|decoder_embed)\.(weight|bias)", r"\1.\2"),
           Rule(r"(encoder|decoder|diffusion)_pos", r"\1_pos_embed_learned"),
           Rule(r"mask_token", "mask_token"),
           *_vit_rules("encoder", "encoder"), *_vit_rules("decoder", "decoder"),
           Rule(r"head\.time_emb\.linear_1\.(weight|bias)", rf"{HEAD}.time_embed.mlp.0.\1"),
           Rule(r"head\.time_emb\.linear_2\.(weight|bias)", rf"{HEAD}.time_embed.mlp.2.\1"),
           Rule(r"head\.cond\.(weight|bias)", rf"{HEAD}.cond_embed.\1"),
           Rule(r"head\.inp\.(weight|bias)", rf"{HEAD}.input_proj.\1"),
           Rule(r"head\.blocks\.(\d+)\.norm\.(weight|bias)", rf"{HEAD}.res_blocks.\1.in_ln.\2"),
           Rule(r"head\.blocks\.(\d+)\.mlp\.(0|2)\.(weight|bias)", rf"{HEAD}.res_blocks.\1.mlp.\2.\3"),
           Rule(r"head\.blocks\.(\d+)\.ada\.1\.(weight|bias)", rf"{HEAD}.res_blocks.\1.adaLN_modulation.1.\2"),
           Rule(r"head\.out_ada\.1\.(weight|bias)", rf"{HEAD}.final_layer.adaLN_modulation.1.\1"),
           Rule(r"head\.out\.(weight|bias)", rf"{HEAD}.final_layer.linear.\1")])


def build(arch: dict) -> dict:
    return {"tokenizer": KLTokenizer(**arch["tokenizer"]), "generator": MARGPT(**arch["generator"])}


FAMILY = register(Family(
    name="mar", paradigm="mar", title="MAR class-conditional masked autoregression with a diffusion head + KL-16 "
                                      "(ImageNet 256x256)",
    sizes={size: {"tokenizer": dict(KL16),
                  "generator": dict(MAR, dim=w, n_layers=n, decoder_layers=n, n_heads=h, head_width=hw, head_blocks=hb)}
           for size, (w, n, h, hw, hb) in WIDTHS.items()},
    build=build,
    sources=(Source("mar", "generator", MAR_MAPPING, ("model_ema", "model"),
                    "MAR, e.g. the MAR-B checkpoint-last.pth (its model_ema)", prepare=prepare_mar),
             Source("kl", "tokenizer", kl_mapping, ("model", "state_dict"), "the KL-16 autoencoder, kl16.ckpt")),
    licence="MIT (LTH14/mar, code and weights).",
    upstream="LTH14/mar",
    # the authors' settings (cfg 2.9 / 3.0 / 3.2 for B / L / H, linear, temperature 1, 100 diffusion steps) at the
    # 64 AR steps their README suggests for speed (256 for their FID)
    defaults=lambda arch: {"steps": min(64, arch["generator"]["grid"] ** 2), "cfg_schedule": "linear",
                           "cfg": {768: 2.9, 1024: 3.0, 1280: 3.2}.get(arch["generator"]["dim"], 3.0),
                           "temperature": 1.0, "diffusion_steps": 100},
))
