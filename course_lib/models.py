"""The course's models: plain ``nn.Module`` s a student can read top to bottom.

- :class:`BaselineCNN`: the "homework-one CNN" the pruning chapters start from, a small
  VGG-style network (three stages of two 3x3 convs, max-pooling, two linear layers).
- :func:`resnet20`: the CIFAR ResNet-20 of He et al. (2016), for the later chapters.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3) -> nn.Sequential:
    """Conv (no bias, "same" padding) -> BatchNorm -> ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class BaselineCNN(nn.Module):
    """VGG-style CNN for 32x32 images.

    ``widths`` are the channels of the three stages; each stage is two conv-BN-ReLU blocks
    and a 2x2 max-pool, so a 32x32 input leaves the features as ``widths[-1]`` x 4 x 4.
    With the defaults: 0.81 M parameters, 39.2 M MACs per 32x32 image.
    """

    def __init__(
        self, widths: tuple[int, int, int] = (32, 64, 128), hidden: int = 256, num_classes: int = 10
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        for width in widths:
            layers += [conv_bn_relu(in_channels, width), conv_bn_relu(width, width)]
            layers.append(nn.MaxPool2d(2))
            in_channels = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_channels * 4 * 4, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 conv) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
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


class CifarResNet(nn.Module):
    """ResNet for CIFAR: a 3x3 stem, three stages of ``blocks_per_stage`` basic blocks."""

    def __init__(
        self,
        blocks_per_stage: int = 3,
        widths: tuple[int, int, int] = (16, 32, 64),
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        self.stem = conv_bn_relu(3, widths[0])
        stages: list[nn.Module] = []
        in_channels = widths[0]
        for i, width in enumerate(widths):
            for j in range(blocks_per_stage):
                stride = 2 if (i > 0 and j == 0) else 1
                stages.append(BasicBlock(in_channels, width, stride))
                in_channels = width
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_channels, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


def resnet20(num_classes: int = 10) -> CifarResNet:
    """ResNet-20 (0.27 M parameters, 40.8 M MACs per 32x32 image)."""
    return CifarResNet(3, (16, 32, 64), num_classes)


def load_baseline_cnn(path: str | Path | None = None) -> BaselineCNN:
    """The trained baseline of chapter 1 (default: the committed ``checkpoints/baseline_cnn.pt``)."""
    from .paths import BASELINE_CHECKPOINT, CHECKPOINT_DIR

    path = Path(path) if path else CHECKPOINT_DIR / BASELINE_CHECKPOINT
    if not path.exists():
        raise FileNotFoundError(
            f"no baseline checkpoint at {path}: run chapter 1 first "
            f"(course run notebooks/01_baseline.ipynb --profile full)."
        )
    model = BaselineCNN()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model
