"""Binary conv and linear layers with latent real weights (seed 004, eq. 3-9, 13, 24-27).

The layer keeps a real ("latent") weight that the optimizer updates. Every forward pass
turns it into the weight it computes with, in this order:

1. weight standardization to the Laplace scale ``b*`` (eq. 24-27), if ``b_star`` is set;
2. the ReCU clamp at the ``tau`` and ``1 - tau`` quantiles (eq. 13-15), while ``tau < 1``
   (``tau`` is a buffer: :func:`set_tau` moves it along the schedule of eq. 28);
3. ``alpha * sign(.)`` with XNOR-Net's per-output-channel ``alpha = mean |.|`` (eq. 7), or
   plain ``sign`` with ``scaling=False``; the latent weight gets the gradient of eq. 9.

The input is binarized with ``sign`` (eq. 3) and a surrogate gradient (:mod:`.binarize`),
optionally after subtracting a learnable per-channel threshold (a free parameter at
inference: the packed kernel compares against it instead of 0). With
``binarize_weight=False`` (:func:`set_binary_weights`) the layer computes with binary inputs
and the real weight: stage 1 of two-stage training (:mod:`.training`), in the papers'
order, activations first; ``binarize_input=False`` keeps the inputs real instead.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .binarize import binarize, sign
from .recu import recu_clamp, standardize
from .scaling import xnor_alpha
from .uncertainty import UncertaintyTracker


class BinaryMixin:
    """What :class:`BinaryConv2d` and :class:`BinaryLinear` share (the weight pipeline)."""

    weight: nn.Parameter
    tau: torch.Tensor

    def init_binary(
        self,
        in_features: int,
        scaling: bool,
        b_star: float | None,
        input_estimator: str,
        weight_estimator: str,
        threshold: bool,
    ) -> None:
        self.scaling, self.b_star = scaling, b_star
        self.input_estimator, self.weight_estimator = input_estimator, weight_estimator
        self.binarize_input = True
        self.binarize_weight = True
        self.register_buffer("tau", torch.tensor(1.0))
        self.threshold = nn.Parameter(torch.zeros(in_features)) if threshold else None
        self.tracker: UncertaintyTracker | None = None

    def track_signs(
        self, window: int = 5, threshold: float = 0.5, sigma: float | None = None
    ) -> None:
        """Binarize the weight with the certainty-aware sign of eq. 38
        (:class:`~.uncertainty.UncertaintyTracker`): in train mode every forward updates the
        tracker and computes with the signs it holds; in eval mode, and in
        :meth:`export_binary` (what the packed kernel reads), the held signs are used as
        they are. ``threshold=1.0`` lets every sign change through (plain ``sign``) and only
        counts the flips. ``sigma``: the width of eq. 36 (``None``: the weights' standard
        deviation)."""
        self.tracker = UncertaintyTracker(self.weight.shape, window, threshold, sigma)

    def weight_sign(self) -> torch.Tensor:
        """The weight's binary values as the forward uses them (no gradient): the tracker's
        held signs once it has seen a training step, ``sign`` of the weight otherwise."""
        with torch.no_grad():
            if self.tracker is not None and int(self.tracker.steps) > 0:
                return self.tracker.previous.to(self.weight.dtype)
            return sign(self.binary_input_weight())

    def binary_input_weight(self) -> torch.Tensor:
        """The real weight ``sign`` is applied to: standardized, then clamped (steps 1-2)."""
        w = self.weight
        if self.b_star is not None:
            w = standardize(w, self.b_star)
        return recu_clamp(w, self.tau)

    def binary_weight(self) -> torch.Tensor:
        """``alpha * sign(w)`` (or ``sign(w)``) with the latent weight's surrogate gradient;
        the real (standardized, clamped) weight itself while :func:`set_binary_weights` has
        switched binarization off (stage 1 of two-stage training)."""
        w = self.binary_input_weight()
        if not self.binarize_weight:
            return w
        if self.tracker is None:
            b = binarize(w, self.weight_estimator)
        elif self.training:
            b = self.tracker(w)
        else:  # the held signs, with the identity gradient of eq. 9
            b = self.weight_sign().to(w.dtype) + (w - w.detach())
        return xnor_alpha(w) * b if self.scaling else b

    def binarized_input(self, x: torch.Tensor) -> torch.Tensor:
        if not self.binarize_input:
            return x
        if self.threshold is not None:
            shape = (1, -1) + (1,) * (x.dim() - 2)
            x = x - self.threshold.view(shape).to(x.dtype)
        return binarize(x, self.input_estimator)

    @torch.no_grad()
    def export_binary(self) -> dict[str, torch.Tensor]:
        """What inference needs: ``sign`` of the weight (+-1, float32), the per-channel
        ``alpha`` (ones without scaling) and the input threshold (zeros without one)."""
        w = self.binary_input_weight().float()
        alpha = xnor_alpha(w).flatten() if self.scaling else torch.ones(w.shape[0])
        threshold = (
            self.threshold.float().clone()
            if self.threshold is not None
            else torch.zeros(w.shape[1])
        )
        return {"sign": self.weight_sign().float(), "alpha": alpha, "threshold": threshold}


class BinaryConv2d(BinaryMixin, nn.Conv2d):
    """A 2-D convolution of ``sign(x)`` with ``alpha * sign(W)`` (no bias: BatchNorm follows).

    ``input_estimator``: the surrogate gradient of the input ``sign`` ("approx" for Bi-Real's
    ApproxSign, "ste" for the clipped identity); ``weight_estimator``: that of the weight
    ``sign`` ("identity", eq. 9). ``b_star``: the standardization target (``None``: off).
    ``threshold``: learn a per-input-channel threshold for the input ``sign``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
        scaling: bool = True,
        b_star: float | None = None,
        input_estimator: str = "approx",
        weight_estimator: str = "identity",
        threshold: bool = False,
    ) -> None:
        nn.Conv2d.__init__(
            self, in_channels, out_channels, kernel_size, stride, padding, bias=False
        )
        self.init_binary(in_channels, scaling, b_star, input_estimator, weight_estimator, threshold)

    def forward(self, x: torch.Tensor, integer: bool = False) -> torch.Tensor:
        """``conv(sign(x - threshold), alpha * sign(W'))``; with ``integer=True`` the integer
        dot products ``conv(sign(x - threshold), sign(W'))`` before ``alpha`` (exact in
        float32: sums of +-1), which is what the packed kernel computes."""
        w = self.weight_sign() if integer else self.binary_weight()
        return F.conv2d(self.binarized_input(x), w, None, self.stride, self.padding)

    def dot(self, x: torch.Tensor) -> torch.Tensor:
        """The integer dot products (see :meth:`forward`)."""
        return self(x, integer=True)


class BinaryLinear(BinaryMixin, nn.Linear):
    """A linear layer of ``sign(x)`` and ``alpha * sign(W)`` (options as in
    :class:`BinaryConv2d`). Optional bias (kept in full precision)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        scaling: bool = True,
        b_star: float | None = None,
        input_estimator: str = "approx",
        weight_estimator: str = "identity",
        threshold: bool = False,
    ) -> None:
        nn.Linear.__init__(self, in_features, out_features, bias=bias)
        self.init_binary(in_features, scaling, b_star, input_estimator, weight_estimator, threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.binarized_input(x), self.binary_weight(), self.bias)


def binary_layers(model: nn.Module) -> list[BinaryMixin]:
    """Every binary conv and linear layer of ``model``."""
    return [m for m in model.modules() if isinstance(m, BinaryMixin)]


def set_tau(model: nn.Module, tau: float) -> None:
    """Set the ReCU quantile of every binary layer (``1.0``: no clamp)."""
    for layer in binary_layers(model):
        layer.tau.fill_(tau)


def set_binary_inputs(model: nn.Module, enabled: bool) -> None:
    """Binarize the inputs of every binary layer (``True``) or keep them real."""
    for layer in binary_layers(model):
        layer.binarize_input = enabled


def set_binary_weights(model: nn.Module, enabled: bool) -> None:
    """Binarize the weights of every binary layer (``True``) or use the real ones (stage 1
    of two-stage training, :mod:`.training`: binary activations, real weights)."""
    for layer in binary_layers(model):
        layer.binarize_weight = enabled
