"""VAR (Tian et al. 2024): the multi-scale VQVAE and the class-conditional VAR-d16..d30 on the next-scale paradigm.

The tokenizer is MINDmap's `MSVQTokenizer` with VAR's switches: attention at the lowest resolution,
3x3 code projections, four phis shared by the ten scales (the one whose tick is nearest k/(K-1)),
latents not normalised. The generator is `ScaleGPT` with LayerNorm without affine, a GELU MLP, q/v
biases, q/k l2-normalised attention with a learned per-head scale, per-block AdaLN and AdaLN before
a head with a bias. Conversion folds `pos_start` into the first position embedding, joins q_bias,
the zero k bias and v_bias into one qkv bias, and rewrites each block's AdaLN rows from VAR's order
(gamma1, gamma2, scale1, scale2, shift1, shift2; the branch times gamma) into MINDmap's (shift,
scale, gate per branch; the branch times 1 + gate). VAR's guidance, t = cfg k/(K-1) and
(1 + t) c - t u, is MINDmap's linear cfg schedule at cfg = 1 + VAR's cfg.

Source layout (FoundationVision/VAR, `models/vqvae.py`, `models/basic_vae.py`, `models/quant.py`,
`models/var.py`, `models/basic_var.py`): plain state dicts; LDM key names in the VQVAE, whose
decoder's `up.{n-1}` is its lowest resolution (diffusers' `up_blocks.0`).
"""
from __future__ import annotations

import re

import torch

from ..generators.scale import ScaleGPT
from ..tokenizers.msvq import MSVQTokenizer
from .base import ConvertError, Mapping, Rule, ldm_autoencoder_rules, merged_attention_rules
from .families import Family, Source, register

SCALES = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
VQVAE = dict(image_size=256, block_out_channels=(160, 160, 320, 320, 640), layers_per_block=2, latent_channels=32,
             norm_num_groups=32, codebook_size=4096, code_dim=32, scales=SCALES, lowest_attention=True,
             quant_kernel=3, shared_phi=4, normalize_latents=False)
VAR = dict(vocab_size=4096, num_classes=1000, scales=SCALES, code_dim=32, grid=16, class_dropout=0.1, dropout=0.0,
           norm="layer", norm_eps=1e-6, mlp="gelu", attn_bias=True, qk_norm=True, head_adaln=True, head_bias=True)
DEPTHS = (16, 20, 24, 30)                       # width 64 x depth, depth heads


def vae_mapping(arch: dict) -> Mapping:
    return Mapping([*ldm_autoencoder_rules(len(arch["block_out_channels"]), merged_attention_rules),
                    Rule(r"(quant_conv|post_quant_conv)\.(weight|bias)", r"\1.\2"),
                    Rule(r"quantizer\.codebook\.weight", "quantize.embedding.weight"),
                    Rule(r"quantizer\.phi\.(\d+)\.conv\.(weight|bias)", r"quantize.quant_resi.qresi_ls.\1.\2")],
                   ignore=(r"quantize\.ema_vocab_hit_SV",))


def prepare_var(state: dict, label: str) -> dict:
    """Fold `pos_start` into the first positions; join each block's q, k (zero) and v biases into one."""
    state = dict(state)
    for key in ("pos_start", "pos_1LC"):
        if key not in state:
            raise ConvertError(f"{label}: missing tensor {key!r} (a different model?)")
    start, pos = state.pop("pos_start"), state.pop("pos_1LC").clone()
    if start.ndim != 3 or pos.ndim != 3 or start.shape[2] != pos.shape[2]:
        raise ConvertError(f"{label}: tensor 'pos_start' has shape {tuple(start.shape)}, 'pos_1LC' "
                           f"{tuple(pos.shape)}: they must be (1, n, C) and (1, L, C)")
    pos[:, :start.shape[1]] += start
    state["pos_1LC"] = pos
    blocks = sorted({int(m.group(1)) for k in state if (m := re.fullmatch(r"blocks\.(\d+)\.attn\.q_bias", k))})
    for i in blocks:
        q = state.pop(f"blocks.{i}.attn.q_bias")
        if f"blocks.{i}.attn.v_bias" not in state:
            raise ConvertError(f"{label}: missing tensor 'blocks.{i}.attn.v_bias'")
        v = state.pop(f"blocks.{i}.attn.v_bias")
        k = state.pop(f"blocks.{i}.attn.zero_k_bias", torch.zeros_like(q))
        state[f"blocks.{i}.attn.qkv_bias"] = torch.cat([q, k, v])
    return state


# VAR's AdaLN rows: gamma1, gamma2, scale1, scale2, shift1, shift2 -> MINDmap's shift1, scale1, gate1, shift2,
# scale2, gate2, where the branch is multiplied by 1 + gate (so gate = gamma - 1: the bias moves by one).
ADALN_ORDER = (4, 2, 0, 5, 3, 1)


def adaln_weight(t: torch.Tensor) -> torch.Tensor:
    parts = t.chunk(6)
    return torch.cat([parts[i] for i in ADALN_ORDER])


def adaln_bias(t: torch.Tensor) -> torch.Tensor:
    parts = list(t.chunk(6))
    parts[0], parts[1] = parts[0] - 1, parts[1] - 1          # gamma -> gate
    return torch.cat([parts[i] for i in ADALN_ORDER])


VAR_MAPPING = Mapping(
    rules=[Rule(r"cls_emb\.weight", "class_emb.weight"),
           Rule(r"word_embed\.(weight|bias)", r"word_embed.\1"),
           Rule(r"pos_emb", "pos_1LC", lambda t: t.flatten(0, 1)),
           Rule(r"level_emb\.weight", "lvl_embed.weight"),
           Rule(r"trunk\.blocks\.(\d+)\.attn\.wqkv\.weight", r"blocks.\1.attn.mat_qkv.weight"),
           Rule(r"trunk\.blocks\.(\d+)\.attn\.wqkv\.bias", r"blocks.\1.attn.qkv_bias"),
           Rule(r"trunk\.blocks\.(\d+)\.attn\.wo\.(weight|bias)", r"blocks.\1.attn.proj.\2"),
           Rule(r"trunk\.blocks\.(\d+)\.attn\.qk_scale", r"blocks.\1.attn.scale_mul_1H11", lambda t: t.flatten()),
           Rule(r"trunk\.blocks\.(\d+)\.ffn\.(fc1|fc2)\.(weight|bias)", r"blocks.\1.ffn.\2.\3"),
           Rule(r"trunk\.blocks\.(\d+)\.ada\.1\.weight", r"blocks.\1.ada_lin.1.weight", adaln_weight),
           Rule(r"trunk\.blocks\.(\d+)\.ada\.1\.bias", r"blocks.\1.ada_lin.1.bias", adaln_bias),
           Rule(r"head_ada\.1\.(weight|bias)", r"head_nm.ada_lin.1.\1"),
           Rule(r"head\.(weight|bias)", r"head.\1")],
    ignore=(r"lvl_1L", r"attn_bias_for_masking"))


def build(arch: dict) -> dict:
    return {"tokenizer": MSVQTokenizer(**arch["tokenizer"]), "generator": ScaleGPT(**arch["generator"])}


FAMILY = register(Family(
    name="var", paradigm="scale", title="VAR class-conditional next-scale transformer + multi-scale VQVAE "
                                        "(ImageNet 256x256)",
    sizes={f"d{d}": {"tokenizer": dict(VQVAE), "generator": dict(VAR, dim=64 * d, n_layers=d, n_heads=d)}
           for d in DEPTHS},
    build=build,
    sources=(Source("var", "generator", VAR_MAPPING, ("model", "state_dict"), "the transformer, e.g. var_d16.pth",
                    prepare=prepare_var),
             Source("vae", "tokenizer", vae_mapping, ("model", "state_dict"), "the VQVAE, vae_ch160v4096z32.pth")),
    licence="MIT (FoundationVision/VAR, code and weights).",
    upstream="FoundationVision/VAR",
    default_size="d16",
    # the authors' demo: cfg 4 (MINDmap's linear schedule at 1 + 4), top-k 900, top-p 0.95
    defaults=lambda arch: {"cfg": 5.0, "cfg_schedule": "linear", "top_k": min(900, arch["generator"]["vocab_size"]),
                           "top_p": 0.95, "temperature": 1.0},
))
