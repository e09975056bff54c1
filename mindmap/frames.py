"""Frame: what a sampler yields after every (streamed) step. The last one is the result."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image


@dataclass
class Frame:
    image: torch.Tensor        # (B, 3, H, W) in [-1, 1]; undecided cells grey
    tokens: torch.Tensor       # (B, g, g) long; -1 where undecided
    order: torch.Tensor        # (B, g, g) long; the step that decided each cell, -1 where undecided
    mask: torch.Tensor         # (B, g, g) bool; True where the cell is still open
    confidence: torch.Tensor   # (B, g, g) float; probability of the sampled code, nan where undecided
    step: int                  # steps done so far
    total: int                 # steps in the whole run
    network_calls: int         # generator forward passes so far (a CFG pair of 2B rows is one call)
    elapsed: float             # seconds since the sampler started
    schedule: list[int] | None = None   # cells committed at each step so far (parallel samplers)
    views: dict = field(default_factory=dict)  # paradigm-specific pictures' data (depth strip, scales...)

    @property
    def done(self) -> bool:
        return self.step == self.total

    def pil(self, index: int = 0, scale: int = 1) -> Image.Image:
        """Image `index` of the batch as a PIL image, upscaled nearest-neighbour by `scale`."""
        return to_pil(self.image[index], scale)


class LazyFrame(Frame):
    """A Frame whose picture is decoded on first access (`image` given as a function): a sampler streams at its
    own speed, and a viewer that skips a preview (the app's bounded frame rate) never pays for its decode."""

    @property
    def image(self) -> torch.Tensor:
        if callable(self._image):
            with torch.inference_mode():
                self._image = self._image()
        return self._image

    @image.setter
    def image(self, value):
        self._image = value


def decided_cells(frame: Frame) -> int:
    """Codes drawn for image 0 when each decided cell holds one (a paradigm with more says so itself)."""
    return int((~frame.mask[0]).sum())


def to_pil(image: torch.Tensor, scale: int = 1) -> Image.Image:
    """(3, H, W) in [-1, 1] -> RGB PIL image, nearest-neighbour upscaled."""
    arr = ((image.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    pil = Image.fromarray(np.ascontiguousarray(arr.permute(1, 2, 0).numpy()))
    if scale > 1:
        pil = pil.resize((pil.width * scale, pil.height * scale), Image.Resampling.NEAREST)
    return pil
