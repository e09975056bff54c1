"""The emoji feature network: a small CNN classifier of subcategories, trained on the train split.

Inception weights cannot be fetched here, so FD-emoji, class consistency and precision/recall are
measured in this network's penultimate features (`features`, 256-d). A linear style head on the same
features names the art style (style agreement).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.SiLU(),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.SiLU())


class EmojiClassifier(ModelMixin, ConfigMixin):

    @register_to_config
    def __init__(self, num_classes: int = 99, image_size: int = 32, channels: tuple = (32, 64, 128),
                 feature_dim: int = 256, dropout: float = 0.2, num_styles: int = 0):
        """`num_styles`: a second head naming the art style from the body's style statistics (each stage's channel
        means and standard deviations, as in Gatys et al.'s style representation), fitted with the body frozen
        (`mindmap train style-head`), so adding it never moves FD-emoji."""
        super().__init__()
        layers, cin = [], 3
        for c in channels:
            layers += [_conv_block(cin, c), nn.MaxPool2d(2)]
            cin = c
        self.body = nn.Sequential(*layers)
        self.proj = nn.Linear(cin, feature_dim)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(feature_dim, num_classes)
        self.style_head = None
        if num_styles:
            width = 2 * sum(channels)
            self.register_buffer("style_mean", torch.zeros(width))    # the statistics' standardisation
            self.register_buffer("style_std", torch.ones(width))
            self.style_head = nn.Sequential(nn.Linear(width, feature_dim), nn.SiLU(), nn.Dropout(dropout),
                                            nn.Linear(feature_dim, num_styles))

    def _input(self, images: torch.Tensor) -> torch.Tensor:
        s = self.config.image_size
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
        return images if images.shape[-1] == s else F.interpolate(images, size=(s, s), mode="area")

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) in [-1, 1] -> penultimate features (B, feature_dim)."""
        h = self.body(self._input(images)).mean(dim=(2, 3))       # global average pool
        return F.silu(self.proj(h))

    def style_statistics(self, images: torch.Tensor) -> torch.Tensor:
        """Each stage's channel means and standard deviations (B, 2 x sum(channels)): texture, not content."""
        h, stats = self._input(images), []
        for layer in self.body:
            h = layer(h)
            if isinstance(layer, nn.MaxPool2d):
                stats += [h.mean(dim=(2, 3)), h.std(dim=(2, 3))]
        return torch.cat(stats, dim=1)

    def style_logits(self, images: torch.Tensor) -> torch.Tensor:
        if self.style_head is None:
            raise ValueError("this classifier has no style head: fit one with `python -m mindmap train style-head "
                             "--out <its folder>`")
        return self.style_head((self.style_statistics(images) - self.style_mean) / self.style_std)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.features(images)))


def augment(images: torch.Tensor, generator: torch.Generator, shift: int = 2) -> torch.Tensor:
    """Random translation by up to `shift` px (white padding) and a small brightness change."""
    b = images.shape[0]
    padded = F.pad(images, (shift,) * 4, value=1.0)
    dx, dy = (torch.randint(0, 2 * shift + 1, (2, b), generator=generator)).tolist()
    s = images.shape[-1]
    out = torch.stack([padded[i, :, dy[i]:dy[i] + s, dx[i]:dx[i] + s] for i in range(b)])
    gain = 1 + 0.1 * (torch.rand(b, 1, 1, 1, generator=generator) - 0.5)
    return ((out + 1) * gain - 1).clamp(-1, 1)


@torch.no_grad()
def embed(model: EmojiClassifier, images: torch.Tensor, batch: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Penultimate features (N, D) and class logits (N, K) of images in [-1, 1]."""
    feats = torch.cat([model.features(images[i:i + batch].float()) for i in range(0, len(images), batch)])
    return feats, model.head(feats)


def topk_agreement(logits: torch.Tensor, labels: torch.Tensor) -> dict:
    """Share of rows whose label is the top-1 / among the top-5 classes."""
    top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
    return {"top1": (top5[:, 0] == labels).float().mean().item(),
            "top5": (top5 == labels[:, None]).any(1).float().mean().item()}
