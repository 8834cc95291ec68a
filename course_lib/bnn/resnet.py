"""The binary ResNet-20 (W/A = 1/1) for CIFAR-10, beside its full-precision twin.

Same skeleton as :func:`course_lib.models.resnet20` (a 3x3 stem, three stages of three
blocks with 16, 32 and 64 channels, global average pooling, one linear layer), with the
changes that make a binary network trainable:

- every 3x3 conv of the blocks is a :class:`~.layers.BinaryConv2d` (binary weights and
  inputs); the **stem and the classifier stay in full precision** (the image and the logits
  need more than one bit, and they hold a tiny part of the MACs);
- Bi-Real shortcuts (Liu et al., 2018): a **real-valued shortcut around every binary conv**,
  not every two, so the real activations reach every layer and only one ``sign`` separates
  any two of them. Where the resolution halves, the shortcut is a full-precision 1x1
  stride-2 conv + BN (``shortcut="conv"``, as in the twin) or parameter-free: subsampling
  with zero channels appended (``shortcut="pad"``), or 2x2 average pooling with the
  channels duplicated (``shortcut="avgpool"``: Bi-Real's pooling, which Bi-Real follows with a
  real 1x1 conv, and ReActNet's channel duplication: every
  input value reaches the next block, none is dropped or replaced by zeros);
- a per-channel activation after every addition (``act``: PReLU by default; "hardtanh" as
  in IR-Net and ReCU; or "identity").

Options for the report's other methods (seed 004; off by default, and then the network is
exactly the one above): ``amplitude`` puts DA-BNN's data-adaptive amplitude (eq. 10-12,
:mod:`.dabnn`) between every binary conv and its BatchNorm; ``dual_bn`` gives every binary
conv's BatchNorm two sets of statistics and lets the network run its latent path (eq. 29-31,
:mod:`.latent_bn`; switch with :func:`~.latent_bn.set_path`); ``certainty`` binarizes the
weights with the certainty-aware sign (eq. 36-38, :mod:`.uncertainty`) at threshold
``Delta = certainty`` over ``certainty_window`` steps and with the width
``certainty_sigma`` of eq. 36 (``None``: each layer's weight standard deviation; ``1.0``:
plain sign, flips counted).
:meth:`BinaryResNet.features` gives the penultimate features (the label-aware loss).

In eval mode every binary conv and its BatchNorm run folded (:func:`folded`), the form the
packed inference engine computes.

Parameter names match the twin's wherever the shapes do (``stem``, ``stages.i.conv1``,
``bn1``, ``conv2``, ``bn2``, ``shortcut``, ``head``), so a trained twin initializes the
binary network with :func:`init_from`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .dabnn import DataAdaptiveAmplitude
from .latent_bn import DualBatchNorm2d, latent_conv
from .layers import BinaryConv2d

ACTIVATIONS = ("prelu", "hardtanh", "identity")
SHORTCUTS = ("conv", "pad", "avgpool")


@dataclass(frozen=True)
class BinaryNetConfig:
    """The binary network's options (see the module docstring and :mod:`.layers`)."""

    widths: tuple[int, int, int] = (16, 32, 64)
    blocks_per_stage: int = 3
    act: str = "prelu"
    shortcut: str = "conv"
    scaling: bool = True
    b_star: float | None = 1.0
    input_estimator: str = "approx"
    threshold: bool = True
    amplitude: bool = False
    dual_bn: bool = False
    certainty: float | None = None
    certainty_window: int = 5
    certainty_sigma: float | None = None

    def __post_init__(self) -> None:
        if self.certainty is not None and not 0.0 < self.certainty <= 1.0:
            raise ValueError(f"certainty (Delta of eq. 38) must be in (0, 1], got {self.certainty}")
        if self.act not in ACTIVATIONS:
            raise ValueError(f"unknown act {self.act!r}: use one of {', '.join(ACTIVATIONS)}")
        if self.shortcut not in SHORTCUTS:
            raise ValueError(
                f"unknown shortcut {self.shortcut!r}: use one of {', '.join(SHORTCUTS)}"
            )


def activation(kind: str, channels: int) -> nn.Module:
    if kind == "prelu":
        return nn.PReLU(channels, init=0.25)
    return nn.Hardtanh() if kind == "hardtanh" else nn.Identity()


class PadShortcut(nn.Module):
    """Option A of He et al.: keep every second pixel, append zero channels."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.extra, self.stride = out_channels - in_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra))


class AvgPoolShortcut(nn.Module):
    """Average ``stride`` x ``stride`` pixels, then repeat the channels ``out / in`` times
    (Bi-Real's pooling, ReActNet's duplication): no parameters, no input value thrown away."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if out_channels % in_channels:
            raise ValueError(
                f"the avgpool shortcut repeats channels: {out_channels} output channels are "
                f"not a multiple of {in_channels} input channels (use shortcut='pad' or 'conv')"
            )
        self.copies, self.stride = out_channels // in_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = F.avg_pool2d(x, self.stride)
        return torch.cat([x] * self.copies, dim=1) if self.copies > 1 else x


class SameFormatGrad(torch.autograd.Function):
    """Identity whose backward returns the gradient in the input's memory format.

    The gradient that global average pooling sends back is NCHW even when the network runs
    channels-last; the residual additions then carry that format through every block, and
    BatchNorm's and hardtanh's backward take a 4-20x slower path on mismatched formats.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.channels_last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        if ctx.channels_last:
            return grad.contiguous(memory_format=torch.channels_last)
        return grad


class BinaryBlock(nn.Module):
    """Two binary 3x3 convs, each with a real-valued shortcut (Bi-Real):
    ``h = act1(bn1(conv1(x)) + shortcut(x))``, ``out = act2(bn2(conv2(h)) + h)``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, cfg: BinaryNetConfig):
        super().__init__()
        options = {
            "scaling": cfg.scaling,
            "b_star": cfg.b_star,
            "input_estimator": cfg.input_estimator,
            "threshold": cfg.threshold,
        }
        norm = DualBatchNorm2d if cfg.dual_bn else nn.BatchNorm2d
        self.conv1 = BinaryConv2d(in_channels, out_channels, 3, stride, 1, **options)
        self.bn1 = norm(out_channels)
        self.act1 = activation(cfg.act, out_channels)
        self.conv2 = BinaryConv2d(out_channels, out_channels, 3, 1, 1, **options)
        self.bn2 = norm(out_channels)
        self.act2 = activation(cfg.act, out_channels)
        self.amp1: nn.Module | None = None
        self.amp2: nn.Module | None = None
        if cfg.amplitude:
            self.amp1 = DataAdaptiveAmplitude(out_channels)
            self.amp2 = DataAdaptiveAmplitude(out_channels)
        if cfg.certainty is not None:
            for conv in (self.conv1, self.conv2):
                conv.track_signs(cfg.certainty_window, cfg.certainty, cfg.certainty_sigma)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            if cfg.shortcut == "conv":
                self.shortcut = nn.Sequential(
                    nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                    nn.BatchNorm2d(out_channels),
                )
            elif cfg.shortcut == "avgpool":
                self.shortcut = AvgPoolShortcut(in_channels, out_channels, stride)
            else:
                self.shortcut = PadShortcut(in_channels, out_channels, stride)

    def conv_bn(self, conv: BinaryConv2d, bn: nn.Module, amp: nn.Module | None, x):
        """``BN(conv(x))``: folded in eval mode (plain path); with DA-BNN's amplitude
        ``BN(A(conv(x)))``; on the latent path ``BN_W(W (*) hardtanh(x))`` (eq. 31)."""
        if isinstance(bn, DualBatchNorm2d) and bn.path == "latent":
            return bn(latent_conv(conv, x))
        if amp is not None:
            if self.training:
                return bn(amp(conv(x)))
            scale, shift = bn_affine(bn)  # BN's eval form as the packed engine computes it
            y = amp(scaled_dot(conv, x))
            return y * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)
        return bn(conv(x)) if self.training else folded(conv, bn, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act1(self.conv_bn(self.conv1, self.bn1, self.amp1, x) + self.shortcut(x))
        return self.act2(self.conv_bn(self.conv2, self.bn2, self.amp2, h) + h)


@torch.no_grad()
def fold(conv: BinaryConv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """XNOR-Net's ``alpha`` and an eval-mode BatchNorm as one scale and one bias per output
    channel: ``BN(alpha * dot) = dot * scale + bias``."""
    alpha = conv.export_binary()["alpha"]
    scale, shift = bn_affine(bn)
    return alpha * scale, shift


def affine_of(
    mean: torch.Tensor, var: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """An eval-mode BatchNorm as ``y = x * scale + shift`` (float32): ``scale = weight /
    sqrt(var + eps)``, ``shift = bias - mean * scale``. The model, the engine and its native
    body all use these numbers and multiply, then add, so they round alike (ATen's own
    BatchNorm kernel rounds differently)."""
    scale = weight.detach().float() / torch.sqrt(var.float() + eps)
    return scale, bias.detach().float() - mean.float() * scale


@torch.no_grad()
def bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`affine_of` a BatchNorm's running statistics (see :func:`running_statistics`)."""
    mean, var = running_statistics(bn)
    return affine_of(mean, var, bn.weight, bn.bias, bn.eps)


def running_statistics(bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """A BatchNorm's running mean and variance (a :class:`~.latent_bn.DualBatchNorm2d`'s
    binary-path set: the deployed network is the binary path)."""
    if isinstance(bn, DualBatchNorm2d):
        return bn.statistics("binary")
    return bn.running_mean, bn.running_var


def folded(conv: BinaryConv2d, bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """Inference of conv + BN in the folded form, ``dot * scale + bias``: mathematically
    conv -> BN, and exactly the float operations of the packed kernel (which uses
    :func:`fold` too), so that the two round alike (the whole network's logits then agree
    within about 2e-6, with the same predictions; not to the bit)."""
    scale, bias = fold(conv, bn)
    return conv.dot(x) * scale.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)


def scaled_dot(conv: BinaryConv2d, x: torch.Tensor) -> torch.Tensor:
    """``alpha * dot``: the binary conv's output as the packed kernel computes it (one
    rounding), which DA-BNN's amplitude reads in eval mode."""
    return conv.dot(x) * conv.export_binary()["alpha"].view(1, -1, 1, 1)


class BinaryResNet(nn.Module):
    """Full-precision stem -> binary blocks -> full-precision head."""

    def __init__(self, cfg: BinaryNetConfig = BinaryNetConfig(), num_classes: int = 10) -> None:
        super().__init__()
        self.cfg = cfg
        w0 = cfg.widths[0]
        self.stem = nn.Sequential(
            nn.Conv2d(3, w0, 3, 1, 1, bias=False), nn.BatchNorm2d(w0), activation(cfg.act, w0)
        )
        blocks: list[nn.Module] = []
        in_channels = w0
        for i, width in enumerate(cfg.widths):
            for j in range(cfg.blocks_per_stage):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(BinaryBlock(in_channels, width, stride, cfg))
                in_channels = width
        self.stages = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_channels, num_classes)
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate features: the pooled ``(N, widths[-1])`` vector the classifier
        reads (the ``Y`` of the label-aware loss, eq. 32-33)."""
        return self.head[:-1](SameFormatGrad.apply(self.stages(self.stem(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head[-1](self.features(x))


def binary_resnet20(
    cfg: BinaryNetConfig = BinaryNetConfig(), num_classes: int = 10
) -> BinaryResNet:
    """The binary ResNet-20 (18 binary 3x3 convs; stem, classifier and the two downsampling
    shortcuts in full precision)."""
    return BinaryResNet(cfg, num_classes)


@torch.no_grad()
def init_from(binary: BinaryResNet, twin: nn.Module) -> list[str]:
    """Copy every parameter and buffer of the trained full-precision ``twin`` whose name and
    shape match into ``binary`` (convs become its latent weights; a two-path BatchNorm's
    ``running_mean_binary`` and ``running_mean_latent`` both take the twin's
    ``running_mean``, and likewise ``running_var``). Returns the names copied into."""
    source = twin.state_dict()
    target = binary.state_dict()
    copied = []
    for name, value in target.items():
        origin = name.removesuffix("_binary").removesuffix("_latent")
        if origin in source and source[origin].shape == value.shape:
            value.copy_(source[origin])
            copied.append(name)
    return copied
