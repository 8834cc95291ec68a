"""XNOR-Net scaling and the quantization error (seed 004, eq. 5-8).

A binary weight tensor keeps only the direction ``sign(W)``; XNOR-Net (Rastegari et al.,
2016) puts back one magnitude per output channel, ``alpha = mean |W|`` over the channel's
``C_in * k * k`` weights, the value that minimizes ``||W - alpha sign(W)||^2``. Because
``alpha`` multiplies a whole output channel, the binary conv still runs as XNOR + popcount
and the product with ``alpha`` (folded into BatchNorm at inference) costs one multiply per
output value.

The quantization error of eq. 8 is ``QE = E[(w - alpha sign(w))^2]``: an integral over the
weights' density, here the mean over a layer's actual weights.
"""

from __future__ import annotations

import torch

from .binarize import sign


def channel_dims(w: torch.Tensor) -> tuple[int, ...]:
    """Every dimension but the first (output channels) of a conv or linear weight."""
    return tuple(range(1, w.dim()))


def xnor_alpha(w: torch.Tensor) -> torch.Tensor:
    """Per-output-channel scale ``mean |W|`` (XNOR-Net), shaped to broadcast against ``w``."""
    if w.dim() < 2:
        raise ValueError(
            f"expected a conv or linear weight (2 or more dims), got shape {tuple(w.shape)}"
        )
    return w.abs().mean(dim=channel_dims(w), keepdim=True)


def quantization_error(w: torch.Tensor, alpha: torch.Tensor | float | None = None) -> float:
    """Eq. 8 on real weights: ``mean((w - alpha * sign(w))^2)``.

    ``alpha=None`` uses XNOR-Net's per-channel ``mean |W|``; pass ``1.0`` for plain ``sign``
    (no scaling).
    """
    w = w.detach().float()
    scale = xnor_alpha(w) if alpha is None else alpha
    return float(((w - scale * sign(w)) ** 2).mean())


def layer_errors(model: torch.nn.Module) -> dict[str, dict[str, float]]:
    """QE (eq. 8) of every binary layer's latent weights, with XNOR-Net's alpha and with
    plain ``sign`` (scale 1), and their mean square (to compare layers of any scale).

    A binary layer is any module with a ``binary_input_weight()`` method (see
    :mod:`.layers`). Standardization and the ReCU clamp do not change ``sign(W)``; the
    error is measured on the latent weights as the optimizer holds them.
    """
    errors = {}
    for name, module in model.named_modules():
        if hasattr(module, "binary_input_weight"):
            w = module.weight.detach()
            errors[name] = {
                "with_alpha": quantization_error(w),
                "without_alpha": quantization_error(w, 1.0),
                "mean_square": float(w.float().pow(2).mean()),
            }
    return errors
