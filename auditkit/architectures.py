"""Network architectures defined in the project.

torchvision cannot be installed beside the pinned torch build and timm needs it, so
the few architectures the demo models use are defined here. A model card names one
of them in ``architecture`` (with keyword arguments in ``architecture_kwargs``) when
its weights are a plain state dict.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

__all__ = ["ARCHITECTURES", "SmallResNet", "SmallUNet", "build_architecture"]


class _BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity (or 1x1) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class SmallResNet(nn.Module):
    """A compact residual CNN (He et al., 2016, "Deep Residual Learning"), CPU-trainable.

    Parameters
    ----------
    in_channels : int
        Image channels (1 for grayscale X-rays, 3 for photos and MRI composites).
    num_outputs : int
        Logits produced: number of classes, or 1 for a single-logit binary model.
    widths : tuple of int
        Channels of each of the four stages; each stage after the first halves
        the spatial size.
    dropout : float
        Dropout before the final linear layer.

    Input is ``(N, in_channels, H, W)`` normalized as the model card says; output is
    ``(N, num_outputs)`` raw logits.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_outputs: int = 2,
        widths: tuple[int, ...] = (16, 32, 64, 128),
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, 2, 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        stages = []
        prev = widths[0]
        for i, width in enumerate(widths):
            stages.append(_BasicBlock(prev, width, stride=1 if i == 0 else 2))
            prev = width
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(prev, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        x = torch.flatten(self.pool(x), 1)
        return self.head(self.dropout(x))


class _DoubleConv(nn.Module):
    """Two 3x3 convolutions, each followed by batch norm and ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class SmallUNet(nn.Module):
    """A compact U-Net (Ronneberger, Fischer & Brox, 2015, "U-Net: Convolutional Networks
    for Biomedical Image Segmentation", arXiv:1505.04597), CPU-trainable.

    Parameters
    ----------
    in_channels : int
        Image channels (3 for the MRI composites: pre-contrast, FLAIR, post-contrast).
    num_outputs : int
        Output channels per pixel: 1 for a single foreground logit (sigmoid), or the
        number of pixel classes (softmax).
    widths : tuple of int
        Channels at each resolution; each level after the first halves the spatial size,
        so ``H`` and ``W`` must be divisible by ``2 ** (len(widths) - 1)``.

    Input is ``(N, in_channels, H, W)`` normalized as the model card says; output is
    ``(N, num_outputs, H, W)`` raw per-pixel logits at the input size.
    """

    def __init__(self, in_channels: int = 3, num_outputs: int = 1,
                 widths: tuple[int, ...] = (8, 16, 32)) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        self.down = nn.ModuleList()
        prev = in_channels
        for width in widths:
            self.down.append(_DoubleConv(prev, width))
            prev = width
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for width in reversed(widths[:-1]):
            self.up.append(nn.ConvTranspose2d(prev, width, 2, stride=2))
            self.merge.append(_DoubleConv(2 * width, width))
            prev = width
        self.head = nn.Conv2d(prev, num_outputs, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips[:-1])):
            x = merge(torch.cat([up(x), skip], dim=1))
        return self.head(x)


ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "small_resnet": SmallResNet,
    "small_unet": SmallUNet,
}


def build_architecture(name: str, **kwargs: Any) -> nn.Module:
    """Instantiate the architecture registered as ``name`` with ``kwargs``."""
    from .exceptions import ModelError

    if name not in ARCHITECTURES:
        raise ModelError(
            f"The model card names architecture {name!r}, which auditkit does not define; "
            f"expected one of {sorted(ARCHITECTURES)}."
        )
    try:
        return ARCHITECTURES[name](**kwargs)
    except TypeError as exc:
        raise ModelError(
            f"architecture_kwargs in the model card do not fit architecture {name!r}: {exc}."
        ) from exc
