"""The chapter's "ImageNet network": VGG16's layout at a quarter of its width, for 32x32 images.

VGG16 (Simonyan and Zisserman, 2015) is 13 3x3 convolutions in five blocks (64, 64 | 128,
128 | 256 x 3 | 512 x 3 | 512 x 3 filters), each block closed by a 2x2 max-pool, then three
fully connected layers. :class:`SmallVGG16` keeps the 13 convolutions and the five blocks
at widths 16 ... 128 (a quarter), adds BatchNorm after every convolution so that it trains
from scratch in minutes, and pools only after the first four blocks: the last block works
on 2x2 maps and the first linear layer reads ``128 x 2 x 2`` features. As in VGG16, pruning
the filters of the last convolution therefore also shrinks the first linear layer.
"""

from __future__ import annotations

from torch import nn

VGG16_WIDTHS = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
"""Filters of VGG16's 13 convolutions (the seed's Table 1)."""
VGG16_BLOCKS = (2, 2, 3, 3, 3)
"""Convolutions per block; a 2x2 max-pool closes every block."""


class SmallVGG16(nn.Module):
    """VGG16's 13 conv layers at ``VGG16_WIDTHS // width_divisor`` filters, conv-BN-ReLU,
    max-pools after blocks 1-4, and a ``hidden``-unit three-layer classifier.

    With the defaults, 32x32 inputs and 8 classes: 1.12 M parameters, 20.1 M MACs.
    """

    def __init__(
        self,
        num_classes: int = 8,
        width_divisor: int = 4,
        hidden: int = 256,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        widths = [w // width_divisor for w in VGG16_WIDTHS]
        layers: list[nn.Module] = []
        in_channels, index = 3, 0
        for block, convs in enumerate(VGG16_BLOCKS):
            for _ in range(convs):
                width = widths[index]
                layers += [
                    nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                ]
                in_channels, index = width, index + 1
            if block < len(VGG16_BLOCKS) - 1:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_channels * 2 * 2, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


def output_layer(model: nn.Module) -> nn.Linear:
    """The last ``Linear`` of ``model``: one output per class."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no Linear layer to use as its head")
    return linears[-1]


def replace_head(model: nn.Module, num_classes: int, seed: int = 0) -> nn.Module:
    """Transfer learning: swap the last ``Linear`` for a fresh one with ``num_classes``
    outputs (initialized with ``seed``); every other weight is kept. Changes ``model``."""
    import torch

    old = output_layer(model)
    parent_name, _, child = _name_of(model, old).rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    torch.random.set_rng_state(generator_state)
    setattr(parent, child, new.to(old.weight.device))
    return model


def _name_of(model: nn.Module, module: nn.Module) -> str:
    return next(name for name, m in model.named_modules() if m is module)


def conv_layers(model: nn.Module) -> dict[str, nn.Conv2d]:
    """Every ``Conv2d`` of ``model`` by its qualified name, in forward order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}


def conv_widths(model: nn.Module) -> list[int]:
    """Filters (output channels) of every convolution, in order."""
    return [m.out_channels for m in conv_layers(model).values()]
