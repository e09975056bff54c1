"""aMUSEd (Patil et al. 2024): a diffusers pipeline folder -> a text-conditioned model on the masked paradigm.

The folder (`amused/amused-256` on the hub, or one saved with `AmusedPipeline.save_pretrained`) holds
`vqvae/` (diffusers `VQModel`: five levels, no mid-block attention, plain nearest-code lookup, pixels in
[0, 1]), `transformer/` (`UVit2DModel`), `text_encoder/` + `tokenizer/` (CLIP-L/14 text encoder with
projection) and `scheduler/` (`AmusedScheduler`, whose `mask_token_id` is the [MASK] input id). The
architecture is read from the folder's own configs and checked; the tensors are renamed and checked
like every family's. MINDmap's masked sampler drives it: the authors' 12 steps, guidance 10 and Gumbel
temperature 2 annealed to 0 are the defaults.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from ..generators.uvit import UVitMaskedGPT
from ..tokenizers.vq import VQTokenizer
from .base import ConvertError, Mapping, Rule
from .families import Family, Source, register

FOLDER = "folder"
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")
CLIP_KEYS = ("vocab_size", "hidden_size", "intermediate_size", "projection_dim", "num_hidden_layers",
             "num_attention_heads", "max_position_embeddings", "hidden_act", "layer_norm_eps", "bos_token_id",
             "eos_token_id", "pad_token_id")
# The published sizes (`--random-init`); a converted folder's own configs replace them.
VQ = dict(image_size=256, block_out_channels=(128, 256, 256, 512, 768), layers_per_block=2, latent_channels=64,
          norm_num_groups=32, codebook_size=8192, code_dim=64, lookup="nearest", mid_attention=False, pixels="unit")
UVIT = dict(hidden_size=1024, use_bias=False, cond_embed_dim=768, micro_cond_encode_dim=256, micro_cond_embed_dim=1280,
            encoder_hidden_size=768, vocab_size=8256, codebook_size=8192, in_channels=768, block_out_channels=768,
            num_res_blocks=3, downsample=False, upsample=False, block_num_heads=12, num_hidden_layers=22,
            num_attention_heads=16, intermediate_size=2816, layer_norm_eps=1e-6, ln_elementwise_affine=True,
            sample_size=16)
CLIP_L = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, projection_dim=768, num_hidden_layers=12,
              num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5)
EXAMPLE_PROMPTS = ["a red fox sitting in the snow", "a lighthouse on a cliff at sunset, oil painting",
                   "a bowl of ramen, studio photo", "a watercolor of a hot air balloon over mountains"]


def read_config(path: Path, class_name: str | None = None) -> dict:
    try:
        config = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ConvertError(f"{path}: not a readable config ({e})") from None
    if not isinstance(config, dict):
        raise ConvertError(f"{path}: not a JSON object")
    if class_name and config.get("_class_name") != class_name:
        raise ConvertError(f"{path}: a {config.get('_class_name')!r} config, expected {class_name!r}")
    return config


def _require(path: Path, config: dict, key: str, want):
    if config.get(key) != want:
        raise ConvertError(f"{path}: {key} is {config.get(key)!r}; MINDmap's aMUSEd reads {want!r}")


def configure(files: dict[str, Path]) -> dict:
    """The architecture the pipeline folder declares (its vqvae, transformer, text encoder and scheduler configs)."""
    root = files[FOLDER]
    vq_path, uvit_path = root / "vqvae" / "config.json", root / "transformer" / "config.json"
    vq, uvit = read_config(vq_path, "VQModel"), read_config(uvit_path, "UVit2DModel")
    levels = len(vq.get("block_out_channels") or ())
    declared = {"norm_type": "group", "act_fn": "silu", **vq}         # VQModel's defaults where the file is silent
    for key, want in (("down_block_types", ["DownEncoderBlock2D"] * levels),
                      ("up_block_types", ["UpDecoderBlock2D"] * levels), ("norm_type", "group"), ("act_fn", "silu"),
                      ("in_channels", 3), ("out_channels", 3), ("lookup_from_codebook", True)):
        _require(vq_path, declared, key, want)
    uvit = {k: v for k, v in uvit.items() if not k.startswith("_")}
    if uvit.get("downsample") or uvit.get("upsample"):
        raise ConvertError(f"{uvit_path}: a down/upsampling UVit2D (aMUSEd-512); MINDmap converts amused-256")
    grid = uvit.get("sample_size", UVIT["sample_size"])
    mask_id = read_config(root / "scheduler" / "scheduler_config.json", "AmusedScheduler").get("mask_token_id")
    clip = read_config(root / "text_encoder" / "config.json")
    px = grid * 2 ** (levels - 1)
    tokenizer = dict(VQ, image_size=px, block_out_channels=tuple(vq["block_out_channels"]),
                     layers_per_block=vq.get("layers_per_block", 1), latent_channels=vq["latent_channels"],
                     norm_num_groups=vq.get("norm_num_groups", 32), codebook_size=vq["num_vq_embeddings"],
                     code_dim=vq.get("vq_embed_dim") or vq["latent_channels"],
                     mid_attention=vq.get("mid_block_add_attention", True))
    generator = dict(network=uvit, vocab_size=uvit.get("codebook_size", UVIT["codebook_size"]), mask_token_id=mask_id,
                     grid=grid, micro_conds=(px, px, 0, 0, 6))
    return {"tokenizer": tokenizer, "generator": generator,
            "text_encoder": {k: clip[k] for k in CLIP_KEYS if k in clip}}


def build(arch: dict) -> dict:
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection
    return {"tokenizer": VQTokenizer(**arch["tokenizer"]), "generator": UVitMaskedGPT(**arch["generator"]),
            "text_encoder": CLIPTextModelWithProjection(CLIPTextConfig(**arch["text_encoder"]))}


def byte_level_tokenizer(folder: Path):
    """A CLIP tokenizer with no merges (one token per byte) for random-init models: no vocabulary to download,
    the same 77 positions, so a random model is timed exactly as the published one."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode
    chars = list(bytes_to_unicode().values())
    vocab = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))


def finish(folder: Path, files: dict[str, Path], arch: dict) -> dict:
    """The CLIP tokenizer beside the text encoder (the folder's own, or a byte-level one at random init)."""
    from transformers import CLIPTokenizer
    out = folder / "text_encoder"
    if files:
        source = files[FOLDER] / "tokenizer"
        try:
            tokenizer = CLIPTokenizer.from_pretrained(source, local_files_only=True)
        except (OSError, ValueError, TypeError) as e:
            raise ConvertError(f"{source}: not a CLIP tokenizer ({type(e).__name__}: {e})") from None
        tokenizer.save_pretrained(out)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            byte_level_tokenizer(Path(tmp)).save_pretrained(out)
    return {"text_encoder": "text_encoder", "example_prompts": EXAMPLE_PROMPTS,
            "help": {"prompt": "what to draw, in words (CLIP reads the first 77 tokens)"}}


FAMILY = register(Family(
    name="amused", paradigm="masked", title="aMUSEd text-to-image masked generator + VQ-GAN (256x256)",
    sizes={"256": {"tokenizer": dict(VQ), "generator": dict(network=dict(UVIT), vocab_size=8192, mask_token_id=8255,
                                                            grid=16, micro_conds=(256, 256, 0, 0, 6)),
                   "text_encoder": dict(CLIP_L)}},
    build=build,
    sources=(Source(FOLDER, "tokenizer",
                    Mapping([Rule(r"(encoder|decoder)\.(.+)", r"\1.\2"),
                             Rule(r"(quant_conv|post_quant_conv)\.(weight|bias)", r"\1.\2"),
                             Rule(r"quantizer\.codebook\.weight", "quantize.embedding.weight")]),
                    help="an aMUSEd pipeline folder (vqvae/, transformer/, text_encoder/, tokenizer/, scheduler/)",
                    member="vqvae/diffusion_pytorch_model.safetensors"),
             Source(FOLDER, "generator", Mapping([Rule(r"uvit\.(.+)", r"\1")]),
                    member="transformer/diffusion_pytorch_model.safetensors"),
             Source(FOLDER, "text_encoder", Mapping([Rule(r"(.+)", r"\1")],
                                                    ignore=(r"text_model\.embeddings\.position_ids",)),
                    member="text_encoder/model.safetensors")),
    licence="the licence named on the `amused/amused-256` model card applies to the converted weights (transformer, "
            "VQ-GAN and CLIP text encoder alike); diffusers' code: Apache-2.0.",
    upstream="huggingface/diffusers (UVit2DModel, VQModel, AmusedPipeline)",
    defaults=lambda arch: {"steps": 12, "schedule": "cosine", "randomness": 2.0, "cfg": 10.0,
                           "cfg_schedule": "constant", "temperature": 1.0},
    default_size="256", conditioning="text", configure=configure, finish=finish,
))
