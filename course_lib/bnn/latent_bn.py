"""Latent-weight inference: one layer, two paths, two sets of BatchNorm statistics
(seed 004, eq. 29-31).

A binary layer keeps a real latent weight ``W`` that only ever enters the computation
through ``sign(W)``. The latent weights form a real-valued network of their own: run the
same layers with ``W`` itself, and with ``hardtanh`` in place of the input ``sign`` (hardtanh
is what the clipped straight-through estimator differentiates). The two paths produce
features with different means and variances, so a BatchNorm whose running statistics
(eq. 29-30: the batch mean ``mu`` and variance ``sigma^2`` of the features) come from the
binary path normalizes the latent path wrongly. Eq. 31 gives each path its own statistics:

- binary path: ``Y_l = act(BN_B(alpha sign(W) (*) sign(Y_{l-1})))``;
- latent path: ``Y~_l = act(BN_W(W (*) hardtanh(Y~_{l-1})))``,

where ``BN_B`` and ``BN_W`` **share** their learnable scale and shift but keep **separate**
running means and variances (:class:`DualBatchNorm2d`).

Which path inference uses is a module attribute, ``path`` (``"binary"`` or ``"latent"``),
set for a whole network with :func:`set_path` (or temporarily with :func:`use_path`). The
binary path is the deployed network (what the packed kernel computes); the latent path is
the real-valued network hidden in the latent weights, evaluated with its own statistics
(and the source of the features the label-aware loss of :mod:`.label_aware` pulls towards).
A training step that needs both runs the network once per path.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn import functional as F

from .layers import BinaryConv2d

PATHS = ("binary", "latent")


def check_path(path: str) -> str:
    if path not in PATHS:
        raise ValueError(f"unknown path {path!r}: use one of {', '.join(PATHS)}")
    return path


class DualBatchNorm2d(nn.Module):
    """BatchNorm with one learnable affine (``weight``, ``bias``) and two sets of running
    statistics, ``running_mean_<path>`` and ``running_var_<path>`` (eq. 29-31). ``forward``
    normalizes with, and in train mode updates, the set of ``path`` (default ``self.path``)."""

    def __init__(self, channels: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.eps, self.momentum, self.path = eps, momentum, "binary"
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        for path in PATHS:
            self.register_buffer(f"running_mean_{path}", torch.zeros(channels))
            self.register_buffer(f"running_var_{path}", torch.ones(channels))

    def statistics(self, path: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The running mean and variance of ``path``."""
        check_path(path)
        return getattr(self, f"running_mean_{path}"), getattr(self, f"running_var_{path}")

    def forward(self, x: torch.Tensor, path: str | None = None) -> torch.Tensor:
        mean, var = self.statistics(path or self.path)
        return F.batch_norm(
            x, mean, var, self.weight, self.bias, self.training, self.momentum, self.eps
        )


class LatentPathConv(nn.Module):
    """A binary conv, its :class:`DualBatchNorm2d` and an activation, run on the path
    ``self.path`` (eq. 31). The latent path convolves ``hardtanh(x - threshold)`` with the
    real weight the binary path takes the sign of (``conv.binary_input_weight()``: the
    latent weight after standardization and the ReCU clamp, when those are on)."""

    def __init__(self, conv: BinaryConv2d, act: nn.Module | None = None) -> None:
        super().__init__()
        self.conv, self.bn = conv, DualBatchNorm2d(conv.out_channels)
        self.act = act if act is not None else nn.Identity()
        self.path = "binary"

    def latent_conv(self, x: torch.Tensor) -> torch.Tensor:
        return latent_conv(self.conv, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        path = check_path(self.path)
        y = self.conv(x) if path == "binary" else self.latent_conv(x)
        return self.act(self.bn(y, path))


def latent_conv(conv: BinaryConv2d, x: torch.Tensor) -> torch.Tensor:
    """The latent path of ``conv`` (eq. 31): ``W (*) hardtanh(x - threshold)`` with the real
    weight the binary path takes the sign of."""
    if conv.threshold is not None:
        x = x - conv.threshold.view(1, -1, 1, 1).to(x.dtype)
    w = conv.binary_input_weight()
    return F.conv2d(F.hardtanh(x), w, None, conv.stride, conv.padding)


def set_path(model: nn.Module, path: str) -> None:
    """Run every :class:`LatentPathConv` and :class:`DualBatchNorm2d` of ``model`` on
    ``path`` ("binary": the deployed network; "latent": the latent-weight network)."""
    check_path(path)
    for module in model.modules():
        if isinstance(module, LatentPathConv | DualBatchNorm2d):
            module.path = path


@contextmanager
def use_path(model: nn.Module, path: str) -> Iterator[nn.Module]:
    """``with use_path(model, "latent"): ...`` runs the block on ``path``, then goes back to
    the binary path."""
    set_path(model, path)
    try:
        yield model
    finally:
        set_path(model, "binary")
