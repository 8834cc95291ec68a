"""DA-BNN: data-adaptive amplitudes for a binary convolution (seed 004, eq. 10-12).

XNOR-Net rescales a binary conv's output with a fixed per-channel ``alpha`` learned from the
weights (eq. 7). DA-BNN makes the amplitude depend on the input instead (eq. 10):
``Z = M * A(M)`` with ``M = conv(sign(x), sign(W))`` the binary conv's output and ``A`` a
small attention-like module, computed in two factors:

- the **channel amplitude** (eq. 11), ``A_c(M) = sigmoid(k_c * AvgPool(M))``: global average
  pooling reduces each channel to one number (no parameters), and a 1-D convolution
  ``k_c`` across neighbouring channels mixes them (a handful of weights instead of a fully
  connected layer); the result is one factor in (0, 1) per sample and channel;
- the **spatial amplitude** (eq. 12), ``A_s(M) = sigmoid(k_s * [AvgPool(M); MaxPool(M)])``:
  the mean and the maximum over channels at every pixel, stacked into two maps and
  convolved by ``k_s`` into one factor in (0, 1) per sample and pixel.

As in attention modules of this shape (CBAM, ECA), the channel factor is applied first and
the spatial one is computed from the rescaled map. The amplitudes cost real-valued
operations at inference (pooling, two small convs, sigmoids, products), unlike XNOR-Net's
``alpha``, which folds into BatchNorm.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def eca_kernel_size(channels: int) -> int:
    """An odd 1-D kernel size that grows with ``log2(channels)`` (ECA-Net's rule):
    3 for 16-32 channels, 5 for 64-128."""
    k = int(abs(math.log2(channels) / 2 + 0.5))
    return k if k % 2 else k + 1


class DataAdaptiveAmplitude(nn.Module):
    """``M -> (M * A_c(M)) * A_s(M * A_c(M))`` (eq. 10-12) for an ``(N, C, H, W)`` map ``M``.

    ``channel_kernel``: size of the 1-D conv ``k_c`` over channels (``None``: ECA's rule,
    :func:`eca_kernel_size`); ``spatial_kernel``: size of the 2-D conv ``k_s`` (odd).
    Apply it to a binary conv's output, before its BatchNorm.
    """

    def __init__(
        self, channels: int, channel_kernel: int | None = None, spatial_kernel: int = 7
    ) -> None:
        super().__init__()
        k_c = eca_kernel_size(channels) if channel_kernel is None else channel_kernel
        if k_c % 2 == 0 or spatial_kernel % 2 == 0:
            raise ValueError(
                f"kernel sizes must be odd (to keep the shape), got {k_c} and {spatial_kernel}"
            )
        self.channels = channels
        self.channel_conv = nn.Conv1d(1, 1, k_c, padding=k_c // 2, bias=False)
        self.spatial_conv = nn.Conv2d(2, 1, spatial_kernel, padding=spatial_kernel // 2, bias=False)

    def check(self, m: torch.Tensor) -> None:
        if m.dim() != 4 or m.shape[1] != self.channels:
            raise ValueError(
                f"expected an (N, {self.channels}, H, W) feature map, got shape {tuple(m.shape)}"
            )

    def precision(self) -> torch.dtype | None:
        """What the factors are computed in: the map's own dtype while training (fast), float64
        in eval mode, as the packed engine computes them (see below)."""
        return None if self.training else torch.float64

    def channel_amplitude(self, m: torch.Tensor) -> torch.Tensor:
        """Eq. 11: one factor in (0, 1) per sample and channel, shape ``(N, C, 1, 1)``."""
        self.check(m)
        return channel_amplitude(m, self.channel_conv.weight, self.precision())

    def spatial_amplitude(self, m: torch.Tensor) -> torch.Tensor:
        """Eq. 12: one factor in (0, 1) per sample and pixel, shape ``(N, 1, H, W)``."""
        return spatial_amplitude(m, self.spatial_conv.weight, self.precision())

    def forward(self, m: torch.Tensor) -> torch.Tensor:
        self.check(m)
        return apply_amplitude(
            m, self.channel_conv.weight, self.spatial_conv.weight, self.precision()
        )


# In eval mode (and in the packed engine) the factors are computed in float64 and rounded
# once to the map's dtype. The means are then the same in any summation order: a sum of N
# float32 terms is exact in float64 when the terms lie within about 2^(29 - log2 N) of each
# other, which holds for the channel means (multiples of one alpha) and, unless a channel
# factor falls below about 1e-4, for the means across channels. The two small convolutions
# and the sigmoids, whose order or implementation differ between ATen and the engine's
# native tail, differ in the last few bits of a double, which the rounding to float32
# removes, except, rarely, for a value that lies that close to a float32 rounding boundary.
# Training computes them in the map's own dtype: float64 there would cost about 60 % more
# time per step (measured on the course's CPU), for a difference in the last bit.


def channel_amplitude(
    m: torch.Tensor, weight: torch.Tensor, precision: torch.dtype | None = torch.float64
) -> torch.Tensor:
    """Eq. 11 with the 1-D kernel ``weight`` ``(1, 1, k)``: ``(N, C, 1, 1)`` factors, computed
    in ``precision`` (``None``: the map's dtype)."""
    wide = m.to(precision or m.dtype)
    pooled = wide.mean(dim=(2, 3)).unsqueeze(1)  # (N, 1, C): channels as a 1-D signal
    a = torch.sigmoid(F.conv1d(pooled, weight.to(wide.dtype), padding=weight.shape[-1] // 2))
    return a.to(m.dtype).view(m.shape[0], -1, 1, 1)


def spatial_amplitude(
    m: torch.Tensor, weight: torch.Tensor, precision: torch.dtype | None = torch.float64
) -> torch.Tensor:
    """Eq. 12 with the 2-D kernel ``weight`` ``(1, 2, k, k)``: ``(N, 1, H, W)`` factors, computed
    in ``precision`` (``None``: the map's dtype)."""
    wide = m.to(precision or m.dtype)
    stacked = torch.cat([wide.mean(dim=1, keepdim=True), wide.amax(dim=1, keepdim=True)], dim=1)
    # one weight layout for the model and the packed engine (training can leave the
    # parameter channels-last, and the two layouts sum in different orders)
    weight = weight.contiguous().to(wide.dtype)
    return torch.sigmoid(F.conv2d(stacked, weight, padding=weight.shape[-1] // 2)).to(m.dtype)


def apply_amplitude(
    m: torch.Tensor,
    channel_weight: torch.Tensor,
    spatial_weight: torch.Tensor,
    precision: torch.dtype | None = torch.float64,
) -> torch.Tensor:
    """``M * A_c(M)``, then times ``A_s`` of that (eq. 10-12), from the two kernels alone:
    what the packed engine runs (:mod:`.engine`), the same operations as the module in eval
    mode (``precision``: as in :func:`channel_amplitude`)."""
    m = m * channel_amplitude(m, channel_weight, precision)
    return m * spatial_amplitude(m, spatial_weight, precision)
