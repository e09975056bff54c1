"""LlamaGen (Sun et al. 2024): the VQ-16 tokenizer and the class-conditional GPTs on the raster paradigm.

The tokenizer is MINDmap's `VQTokenizer` (diffusers encoder/decoder, l2-normalised codebook) with
attention at the lowest resolution; the GPT is `RasterGPT` with LlamaGen's switches: RMSNorm eps
1e-5, SwiGLU width a multiple of 256, and the class token's rotary rows all zeros (its queries and
keys vanish in every layer, as in the authors' `precompute_freqs_cis_2d`).

Source layout (FoundationVision/LlamaGen, `tokenizer/tokenizer_image/vq_model.py`,
`autoregressive/models/gpt.py`): weights under "model" (or "module" / "state_dict"); the decoder's
`conv_blocks.0` is its lowest resolution, as diffusers' `up_blocks.0`.
"""
from __future__ import annotations

from ..generators.raster import RasterGPT
from ..tokenizers.vq import VQTokenizer
from .base import Mapping, Rule, ldm_resnet_rules, split_attention_rules
from .families import Family, Source, register

VQ16 = dict(image_size=256, block_out_channels=(128, 128, 256, 256, 512), layers_per_block=2, latent_channels=256,
            norm_num_groups=32, codebook_size=16384, code_dim=8, lowest_attention=True)
GPT = dict(vocab_size=16384, num_classes=1000, grid=16, class_dropout=0.1, dropout=0.0, norm_eps=1e-5,
           ffn_multiple_of=256, prefix_rope="zero")
WIDTHS = {"B": (768, 12, 12), "L": (1024, 24, 16), "XL": (1280, 36, 20), "XXL": (1536, 48, 24), "3B": (3200, 24, 32)}
# The published class-conditional GPTs: B and L at 256 px (16x16 codes), every size at 384 px (24x24 codes).
SIZES = {"B": ("B", 256), "L": ("L", 256), **{f"{w}-384": (w, 384) for w in WIDTHS}}


def _coder_rules(side: str, blocks: str, resample: str) -> list[Rule]:
    """Encoder or decoder: conv_in/out, the resolution levels, the mid block (res, attn, res)."""
    ours, theirs = rf"{side}\.{blocks}\.(\d+)", rf"{side}.conv_blocks.\1"
    return [
        Rule(rf"{side}\.conv_in\.(weight|bias)", rf"{side}.conv_in.\1"),
        Rule(rf"{side}\.conv_out\.(weight|bias)", rf"{side}.conv_out.\1"),
        Rule(rf"{side}\.conv_norm_out\.(weight|bias)", rf"{side}.norm_out.\1"),
        *ldm_resnet_rules(rf"{ours}\.resnets\.(\d+)", rf"{theirs}.res.\2"),
        *split_attention_rules(rf"{ours}\.attentions\.(\d+)", rf"{theirs}.attn.\2"),
        Rule(rf"{ours}\.{resample}rs\.0\.conv\.(weight|bias)", rf"{theirs}.{resample}.conv.\2"),
        *ldm_resnet_rules(rf"{side}\.mid_block\.resnets\.0", f"{side}.mid.0"),
        *split_attention_rules(rf"{side}\.mid_block\.attentions\.0", f"{side}.mid.1"),
        *ldm_resnet_rules(rf"{side}\.mid_block\.resnets\.1", f"{side}.mid.2"),
    ]


VQ_MAPPING = Mapping(
    rules=[*_coder_rules("encoder", "down_blocks", "downsample"), *_coder_rules("decoder", "up_blocks", "upsample"),
           Rule(r"(quant_conv|post_quant_conv)\.(weight|bias)", r"\1.\2"),
           Rule(r"quantizer\.codebook\.weight", "quantize.embedding.weight")],
    ignore=(r"quantize\.codebook_used",))

GPT_MAPPING = Mapping(
    rules=[Rule(r"cls_emb\.weight", "cls_embedding.embedding_table.weight"),
           Rule(r"tok_emb\.weight", "tok_embeddings.weight"),
           Rule(r"trunk\.blocks\.(\d+)\.attn\.(wqkv|wo)\.weight", r"layers.\1.attention.\2.weight"),
           Rule(r"trunk\.blocks\.(\d+)\.ffn\.(w1|w2|w3)\.weight", r"layers.\1.feed_forward.\2.weight"),
           Rule(r"trunk\.blocks\.(\d+)\.attn_norm\.weight", r"layers.\1.attention_norm.weight"),
           Rule(r"trunk\.blocks\.(\d+)\.ffn_norm\.weight", r"layers.\1.ffn_norm.weight"),
           Rule(r"trunk\.norm\.weight", "norm.weight"),
           Rule(r"head\.weight", "output.weight")],
    ignore=(r"freqs_cis", r"causal_mask", r".*kv_cache.*"))


def build(arch: dict) -> dict:
    return {"tokenizer": VQTokenizer(**arch["tokenizer"]), "generator": RasterGPT(**arch["generator"])}


FAMILY = register(Family(
    name="llamagen", paradigm="raster", title="LlamaGen class-conditional GPT + VQ-16 (ImageNet 256x256 or 384x384)",
    sizes={size: {"tokenizer": dict(VQ16, image_size=px),
                  "generator": dict(GPT, grid=px // 16, **dict(zip(("dim", "n_layers", "n_heads"), WIDTHS[width])))}
           for size, (width, px) in SIZES.items()},
    build=build,
    sources=(Source("gpt", "generator", GPT_MAPPING, ("model", "module", "state_dict"),
                    "the GPT, e.g. c2i_B_256.pt (size B) or c2i_XL_384.pt (XL-384)"),
             Source("tokenizer", "tokenizer", VQ_MAPPING, ("model", "state_dict"), "the VQ-16 tokenizer, vq_ds16_c2i.pt")),
    licence="MIT (FoundationVision/LlamaGen, code and weights).",
    upstream="FoundationVision/LlamaGen",
    defaults=lambda arch: {"cfg": 4.0, "top_k": min(2000, arch["generator"]["vocab_size"]), "top_p": 1.0,
                           "temperature": 1.0},   # the authors' demo (sample_c2i.py)
))
