"""What sharpens a tokenizer beyond L1 + MSE: a patch discriminator and a feature-matching loss.

- `PatchDiscriminator`: a PatchGAN (Isola et al. 2017) scoring each receptive field of an image as real or
  reconstructed, trained with the hinge loss; the tokenizer's adversarial term is weighted adaptively (VQGAN,
  Esser et al. 2021): the ratio of the reconstruction and adversarial gradients at the decoder's last layer, so
  neither drowns the other whatever their scales.
- `FeatureMatching`: the distance between real and reconstructed images in the frozen stages of the project's own
  emoji classifier (LPIPS's recipe without its learned weights: each stage's activations unit-normalised over
  channels, squared differences averaged). No perceptual network is downloaded. rFD-emoji is read from the same
  classifier's final features, so the model cards say so beside it.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F


class PatchDiscriminator(nn.Module):
    """Images (B, 3, H, W) in [-1, 1] -> real/fake logits per patch (B, 1, H/4, W/4): two stride-2 convolutions
    and two stride-1 ones, GroupNorm and LeakyReLU between (no norm on the first layer, none on the logits)."""

    def __init__(self, channels: tuple = (64, 128, 256), groups: int = 16):
        super().__init__()
        c1, c2, c3 = channels
        self.net = nn.Sequential(
            nn.Conv2d(3, c1, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(c1, c2, 4, stride=2, padding=1), nn.GroupNorm(groups, c2), nn.LeakyReLU(0.2),
            nn.Conv2d(c2, c3, 3, padding=1), nn.GroupNorm(groups, c3), nn.LeakyReLU(0.2),
            nn.Conv2d(c3, 1, 3, padding=1))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def adaptive_weight(rec_loss: torch.Tensor, gan_loss: torch.Tensor, last_layer: torch.Tensor,
                    limit: float = 1e4) -> torch.Tensor:
    """||d rec / d W|| / ||d gan / d W|| at the decoder's last weights W (VQGAN's lambda), detached."""
    rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    gan_grad = torch.autograd.grad(gan_loss, last_layer, retain_graph=True)[0]
    return (rec_grad.norm() / (gan_grad.norm() + 1e-6)).clamp(0, limit).detach()


class FeatureMatching(nn.Module):
    """Mean over the classifier's stages of the squared distance between channel-normalised activations."""

    def __init__(self, classifier):
        super().__init__()
        self.body = classifier.body.eval().requires_grad_(False)
        self.size = classifier.config.image_size

    def train(self, mode: bool = True):
        return super().train(False)            # BatchNorm and dropout stay frozen

    def stages(self, images: torch.Tensor) -> list[torch.Tensor]:
        h = images if images.shape[-1] == self.size else F.interpolate(images, size=(self.size,) * 2, mode="area")
        out = []
        for layer in self.body:
            h = layer(h)
            if isinstance(layer, nn.MaxPool2d):
                out.append(F.normalize(h, dim=1, eps=1e-6))
        return out

    def forward(self, recon: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            want = self.stages(real)
        got = self.stages(recon)
        return sum((a - b).pow(2).sum(1).mean() for a, b in zip(got, want)) / len(got)


def load_feature_matching(root: Path | None = None) -> FeatureMatching:
    from ..eval.run import load_classifier
    return FeatureMatching(load_classifier(root))


def decoder_last_layer(tok) -> torch.Tensor:
    """The weights of the convolution that writes the pixels (every tokenizer here uses diffusers' Decoder)."""
    return tok.decoder.conv_out.weight
