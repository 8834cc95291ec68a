"""BD-BNN: bimodal-distribution-aware training (seed 004, eq. 39-44).

Latent weights usually look Gaussian or Laplacian: many of them sit near zero, where
``sign`` is least stable and the quantization error ``w - alpha sign(w)`` is largest.
BD-BNN pushes each layer's weights towards two humps away from zero, with two terms:

- **kurtosis regularization** (eq. 39-42). The kurtosis ``E[((W - mu) / sigma)^4]``
  (eq. 39) is 3 for a Gaussian, 6 for a Laplace, and 1 for the most bimodal distribution
  there is (two equal spikes at ``mu +- sigma``). ``L_k = (1/L) sum_l (Kurt[W_l] - K_T)^2``
  (eq. 41), added to the loss with a weight ``lambda`` (eq. 40), pulls every layer's
  kurtosis towards the target ``K_T``; the report suggests ``K_T = 1``, which splits the
  weights into two modes gently enough not to hurt generalization. Eq. 42 writes out the
  gradient; autograd computes it.
- **weight-distribution mimicking** (eq. 43): a full-precision teacher with the same
  architecture (trained with its own kurtosis targets) shows each layer what shape its
  weights should take: ``L_WDM = sum_l KL(D(W_l,T) || D(W_l,S)) + beta L_KD(y_T, y_S)``,
  where ``D`` turns a weight tensor into a distribution (here a soft histogram over bins
  fixed by the teacher's weights, :func:`weight_distribution`) and ``L_KD`` is the
  distillation term of :func:`~.training.kd_divergence`.

The training loss is ``L = L_ce + lambda L_k + alpha L_WDM`` (eq. 44,
:func:`bdbnn_loss`). The teacher's and the student's layers are paired by name
(:func:`paired_weights`): the binary ResNet-20 names its layers like its full-precision twin.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .layers import BinaryMixin, binary_layers
from .training import kd_divergence


def kurtosis(w: torch.Tensor) -> torch.Tensor:
    """Eq. 39: ``E[((w - mu) / sigma)^4]`` over all elements (population moments; 3 for a
    Gaussian, 1 for two equal spikes)."""
    w = w.float().flatten()
    centred = w - w.mean()
    var = centred.pow(2).mean()
    return centred.pow(4).mean() / var.pow(2).clamp_min(1e-24)


def kurtosis_loss(weights: list[torch.Tensor], target: float = 1.0) -> torch.Tensor:
    """Eq. 41: ``(1/L) sum_l (Kurt[W_l] - K_T)^2`` over the ``L`` tensors of ``weights``."""
    if not weights:
        raise ValueError("kurtosis_loss needs at least one weight tensor")
    if target < 1.0:
        raise ValueError(f"no distribution has a kurtosis below 1; got target {target}")
    return torch.stack([(kurtosis(w) - target).pow(2) for w in weights]).mean()


def weight_distribution(
    w: torch.Tensor, centres: torch.Tensor, bandwidth: float | torch.Tensor
) -> torch.Tensor:
    """``D(W)`` of eq. 43: a soft histogram of ``w`` over the bin ``centres`` (a Gaussian
    kernel of width ``bandwidth`` per weight; differentiable in ``w``), normalized to sum
    to 1."""
    d = (w.float().flatten().unsqueeze(1) - centres.unsqueeze(0)) / bandwidth
    mass = torch.softmax(-0.5 * d.pow(2), dim=1).sum(dim=0)  # each weight spreads mass 1
    return mass / mass.sum()


def distribution_kl(
    teacher_w: torch.Tensor, student_w: torch.Tensor, bins: int = 64
) -> torch.Tensor:
    """``KL(D(W_T) || D(W_S))`` over ``bins`` bins spanning the teacher's weight range (the
    bandwidth is one bin). 0 for identical tensors; the teacher only sets targets."""
    teacher_w = teacher_w.detach().float()
    low, high = teacher_w.min(), teacher_w.max()
    width = (high - low).clamp_min(1e-8) / (bins - 1)
    centres = low + width * torch.arange(bins, device=teacher_w.device)
    p = weight_distribution(teacher_w, centres, width)
    q = weight_distribution(student_w, centres, width)
    return F.kl_div(q.clamp_min(1e-12).log(), p, reduction="sum")


def wdm_loss(
    pairs: list[tuple[torch.Tensor, torch.Tensor]],
    bins: int = 64,
    logits: torch.Tensor | None = None,
    teacher_logits: torch.Tensor | None = None,
    beta: float = 0.0,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Eq. 43: ``sum_l KL(D(W_l,T) || D(W_l,S)) + beta L_KD(y_T, y_S)`` over ``pairs`` of
    ``(student, teacher)`` weights; the KD term needs ``logits`` and ``teacher_logits``."""
    if not pairs:
        raise ValueError("wdm_loss needs at least one (student, teacher) weight pair")
    loss = torch.stack([distribution_kl(t, s, bins) for s, t in pairs]).sum()
    if beta > 0:
        if logits is None or teacher_logits is None:
            raise ValueError("beta > 0 needs both the student's and the teacher's logits")
        loss = loss + beta * kd_divergence(logits, teacher_logits, temperature)
    return loss


def latent_weights(model: nn.Module) -> list[torch.Tensor]:
    """The latent weights of every binary layer of ``model`` (the ``W_l`` of eq. 41)."""
    return [layer.weight for layer in binary_layers(model)]


def paired_weights(
    student: nn.Module, teacher: nn.Module
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(student latent weight, teacher weight)`` for every binary layer of ``student``
    whose name and shape the ``teacher`` has too (eq. 43's layer pairs)."""
    teacher_params = dict(teacher.named_parameters())
    pairs = []
    for name, module in student.named_modules():
        if isinstance(module, BinaryMixin):
            t = teacher_params.get(f"{name}.weight")
            if t is not None and t.shape == module.weight.shape:
                pairs.append((module.weight, t))
    if not pairs:
        raise ValueError(
            "no binary layer of the student matches a teacher parameter by name and shape: "
            "pass the full-precision twin the student was built from"
        )
    return pairs


def bdbnn_loss(
    ce: torch.Tensor,
    student: nn.Module,
    pairs: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
    lam: float = 1e-4,
    alpha: float = 1.0,
    target: float = 1.0,
    bins: int = 64,
    logits: torch.Tensor | None = None,
    teacher_logits: torch.Tensor | None = None,
    beta: float = 0.0,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Eq. 44: ``L_ce + lam L_k + alpha L_WDM``, with ``ce`` the batch's cross-entropy, the
    kurtosis term over the ``student``'s latent weights and ``L_WDM`` (:func:`wdm_loss`,
    with its optional KD term ``beta``) only where ``pairs`` are given."""
    loss = ce + lam * kurtosis_loss(latent_weights(student), target)
    if pairs:
        kd = wdm_loss(pairs, bins, logits, teacher_logits, beta, temperature)
        loss = loss + alpha * kd
    return loss
