"""Checks and settings of the binary-network assignment (``assignments/source/bnn``).

Students write ``sign`` with the clipped-identity straight-through estimator (forward and
backward), the binary dot product as XNOR + popcount on packed 64-bit words, XNOR-Net's
``alpha`` and the quantization error (eq. 7-8), and the ReCU clamp (eq. 13-15). Every
check compares with the course's own functions (:mod:`course_lib.bnn`):

- **exact**: signs, STE gradients, packed words and dot products (integers);
- within ``FLOAT_TOLERANCE``: ``alpha``, the quantization error, the clamp;
- a floor for the accuracy of a small binary CNN trained with the student's functions
  (:data:`BNN_MIN_ACCURACY`): above what the same network reaches when ``sign`` passes no
  gradient, so a wrong estimator fails (``tests/test_grading_bnn.py`` shows both sides).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..bnn.binarize import SignSTE as ReferenceSignSTE
from ..bnn.binarize import sign as reference_sign
from ..bnn.recu import recu_clamp as reference_clamp
from ..bnn.scaling import quantization_error as reference_qe
from ..bnn.scaling import xnor_alpha as reference_alpha
from ..data import DataSettings, Loaders
from ..profiles import check_profile
from ..train import evaluate, seed_everything
from .checks import CheckFailed

#: Absolute tolerance of floating-point results (alpha, QE, clamped weights).
FLOAT_TOLERANCE = 1e-6

#: The quick homework network trained with a correct estimator reaches about 40 % (chance:
#: 10 %); with a sign that passes no gradient only its last layer learns, about 25 % at
#: best. The floor sits between them (measured: ``tests/test_grading_bnn.py``).
BNN_MIN_ACCURACY = 0.33

#: Vector lengths of the dot-product checks: one word, around word boundaries, odd lengths.
DOT_LENGTHS = (1, 7, 63, 64, 65, 100, 129)
#: Weight shapes of the alpha, QE and clamp checks: convs, 1x1 convs, linear layers.
WEIGHT_SHAPES = ((8, 3, 3, 3), (16, 16, 1, 1), (10, 64), (5, 7, 3, 3))


@dataclass(frozen=True)
class BnnHomework:
    """What the assignment trains: the data, the small binary CNN's widths, its ReCU
    ``tau``, and Adam's epochs and learning rate."""

    data: DataSettings
    widths: tuple[int, int, int]
    tau: float
    epochs: int
    lr: float


BNN_HOMEWORK = {
    # graded: about a minute on a laptop CPU
    "quick": BnnHomework(
        data=DataSettings(train_per_class=300, val_per_class=50, test_per_class=100, batch_size=64),
        widths=(32, 64, 128),
        tau=0.9,
        epochs=4,
        lr=5e-3,
    ),
    # all of CIFAR-10 (about 20 minutes on 2 cores)
    "full": BnnHomework(
        data=DataSettings(batch_size=128), widths=(64, 128, 256), tau=0.9, epochs=10, lr=2e-3
    ),
}


def bnn_homework(profile: str) -> BnnHomework:
    """The settings of the binary-network assignment for ``profile``."""
    return BNN_HOMEWORK[check_profile(profile)]


# --- part 1: sign and its straight-through estimator ---------------------------------------


def _as_function(sign_ste) -> Callable[[torch.Tensor], torch.Tensor]:
    return sign_ste.apply if hasattr(sign_ste, "apply") else sign_ste


def check_sign_ste(sign_ste, shapes=((7,), (3, 5), (2, 3, 4, 5)), seed: int = 0) -> None:
    """``sign_ste`` (an autograd Function, or a function) returns +1 for ``x >= 0`` and -1
    below, in ``x``'s dtype and shape, and passes ``grad * 1{|x| <= 1}`` backward."""
    fn = _as_function(sign_ste)
    fixed = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0], requires_grad=True)
    cases = [fixed]
    generator = torch.Generator().manual_seed(seed)
    for shape in shapes:
        x = torch.randn(shape, generator=generator, dtype=torch.float64) * 1.5
        x.view(-1)[0] = 0.0
        cases.append(x.requires_grad_(True))
    for x in cases:
        out = fn(x)
        want = reference_sign(x.detach())
        if not isinstance(out, torch.Tensor) or out.shape != x.shape or out.dtype != x.dtype:
            got = (tuple(out.shape), out.dtype) if isinstance(out, torch.Tensor) else type(out)
            raise CheckFailed(
                f"sign of a {x.dtype} tensor of shape {tuple(x.shape)} returned {got}: "
                f"keep the input's shape and dtype"
            )
        if not torch.equal(out.detach(), want):
            bad = (out.detach() != want).nonzero()[0].tolist()
            raise CheckFailed(
                f"sign({x.detach()[tuple(bad)].item():g}) = {out.detach()[tuple(bad)].item():g}, "
                f"expected {want[tuple(bad)].item():g}: +1 for x >= 0 (zero included), -1 for x < 0"
            )
        upstream = torch.linspace(-1, 2, x.numel(), dtype=x.dtype).reshape(x.shape)
        (grad,) = torch.autograd.grad(out, x, upstream)
        expected = upstream * (x.detach().abs() <= 1).to(x.dtype)
        if grad is None or not torch.equal(grad, expected):
            raise CheckFailed(
                "the backward pass is not the clipped identity: it must return the incoming "
                "gradient where |x| <= 1 (boundary included) and 0 where |x| > 1, element by "
                f"element (input {[round(v, 2) for v in x.detach().flatten()[:7].tolist()]}...)"
            )


def zero_gradient_sign() -> type[torch.autograd.Function]:
    """A wrong estimator for the tests: ``sign`` forward, no gradient backward."""

    class ZeroGradSign(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return reference_sign(x)

        @staticmethod
        def backward(ctx, grad):
            return torch.zeros_like(grad)

    return ZeroGradSign


# --- part 2: XNOR + popcount ------------------------------------------------------------------


def reference_pack(v: torch.Tensor) -> list[int]:
    """+-1 vector -> 64-bit words, bit ``i % 64`` of word ``i // 64`` set where ``v[i] = -1``."""
    words = [0] * ((len(v) + 63) // 64)
    for i, value in enumerate(v.tolist()):
        if value < 0:
            words[i // 64] |= 1 << (i % 64)
    return words


def reference_binary_dot(a: list[int], w: list[int], n: int) -> int:
    """``n - 2 popcount(a xor w)``."""
    return n - 2 * sum((x ^ y).bit_count() for x, y in zip(a, w, strict=True))


def check_packing(pack: Callable, lengths=DOT_LENGTHS, seed: int = 0) -> None:
    """``pack(v)`` gives exactly the 64-bit words of :func:`reference_pack`."""
    generator = torch.Generator().manual_seed(seed)
    for n in lengths:
        v = reference_sign(torch.randn(n, generator=generator))
        got, want = pack(v.clone()), reference_pack(v)
        got = [int(x) for x in got] if isinstance(got, list | tuple) else got
        if got != want:
            raise CheckFailed(
                f"pack of a length-{n} vector gave {got!r}, expected {len(want)} word(s) "
                f"{want}: bit i % 64 of word i // 64 is 1 where v[i] = -1, and the last word "
                f"keeps its unused high bits 0"
            )


def check_binary_dot(
    pack: Callable, binary_dot: Callable, lengths=DOT_LENGTHS, seed: int = 0
) -> None:
    """``binary_dot(pack(a), pack(w), n)`` equals the float dot product ``a . w`` exactly,
    for random, equal and opposite +-1 vectors of every length."""
    generator = torch.Generator().manual_seed(seed)
    for n in lengths:
        a = reference_sign(torch.randn(n, generator=generator))
        w = reference_sign(torch.randn(n, generator=generator))
        for name, (x, y) in {"random": (a, w), "equal": (a, a), "opposite": (a, -a)}.items():
            want = int((x * y).sum().item())
            got = binary_dot(pack(x.clone()), pack(y.clone()), n)
            if isinstance(got, torch.Tensor):
                got = got.item()
            if got != want:
                raise CheckFailed(
                    f"binary_dot of two {name} +-1 vectors of length {n} = {got!r}, the float "
                    f"dot product is {want}: use n - 2 * popcount(a xor w) (or 2 * popcount of "
                    f"the XNOR over the n used bits - n)"
                )


# --- part 3: alpha and the quantization error ----------------------------------------------------


def _weights(shapes, seed: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    out = []
    for shape in shapes:
        w = torch.randn(shape, generator=generator) * 0.1
        w.view(-1)[:3] = 0.0  # exact zeros: sign +1
        out.append(w)
    return out


def _close(got, want: torch.Tensor, what: str, hint: str) -> None:
    if not isinstance(got, torch.Tensor):
        got = torch.as_tensor(got, dtype=want.dtype)
    if got.numel() != want.numel():
        raise CheckFailed(f"{what}: got {tuple(got.shape)}, expected {tuple(want.shape)}: {hint}")
    error = (got.detach().reshape(want.shape).double() - want.double()).abs().max().item()
    if error > FLOAT_TOLERANCE:
        raise CheckFailed(f"{what}: off by up to {error:.3g}: {hint}")


def check_alpha(xnor_alpha: Callable, shapes=WEIGHT_SHAPES, seed: int = 0) -> None:
    """``xnor_alpha(w)``: one ``mean |W|`` per output channel (``w.shape[0]`` values)."""
    for w in _weights(shapes, seed):
        _close(
            xnor_alpha(w.clone()),
            reference_alpha(w).flatten(),
            f"xnor_alpha of a weight of shape {tuple(w.shape)}",
            "alpha is the mean of |w| over everything but the first (output-channel) dimension",
        )


def check_quantization_error(
    quantization_error: Callable, shapes=WEIGHT_SHAPES, seed: int = 0
) -> None:
    """``quantization_error(w, alpha)`` is eq. 8, ``mean((w - alpha sign(w))^2)``, with the
    per-channel alpha and with ``alpha = 1``."""
    for w in _weights(shapes, seed):
        alpha = reference_alpha(w)
        for scale, label in ((alpha, "XNOR alpha"), (torch.ones_like(alpha), "alpha = 1")):
            _close(
                quantization_error(w.clone(), scale.flatten().clone()),
                torch.tensor(reference_qe(w, scale)),
                f"quantization_error of a {tuple(w.shape)} weight with {label}",
                "eq. 8: the mean over all weights of (w - alpha_o * sign(w))^2, alpha_o of the "
                "weight's output channel, and sign(0) = +1",
            )


# --- part 4: the ReCU clamp -------------------------------------------------------------------


def check_recu(
    recu_clamp: Callable, taus=(0.7, 0.85, 0.99), shapes=WEIGHT_SHAPES, seed: int = 0
) -> None:
    """``recu_clamp(w, tau)`` clamps ``w`` to ``[-Q, Q]`` with ``Q = -b ln(2 - 2 tau)`` and
    ``b = mean |w|`` over the whole tensor; ``tau = 1`` leaves ``w`` unchanged."""
    for w in _weights(shapes, seed):
        for tau in (*taus, 1.0):
            _close(
                recu_clamp(w.clone(), tau),
                reference_clamp(w, tau),
                f"recu_clamp(w of shape {tuple(w.shape)}, tau={tau})",
                "clamp to [-Q, Q] with Q = -b ln(2 - 2 tau), b = mean |w| over the whole tensor "
                "(eq. 13-15); tau = 1 means no clamp",
            )


# --- part 5: training with the student's functions -------------------------------------------------


class HomeworkBinaryConv(nn.Module):
    """A binary 3x3 conv built from the student's functions: ``sign_ste`` on the input and
    on ``recu_clamp``-ed weights, scaled by ``xnor_alpha``."""

    def __init__(self, in_channels: int, out_channels: int, functions: dict, tau: float):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3) * 0.05)
        self.functions, self.tau = functions, tau

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.functions
        w = f["recu_clamp"](self.weight, self.tau)
        alpha = f["xnor_alpha"](w).reshape(-1, 1, 1, 1)
        return F.conv2d(f["sign"](x), alpha * f["sign"](w), padding=1)


class HomeworkBinaryNet(nn.Module):
    """Full-precision stem, three binary conv + BN + max-pool stages (no real-valued
    shortcuts: every gradient below the classifier passes through ``sign``), classifier."""

    def __init__(self, functions: dict, widths=(32, 64, 128), tau: float = 0.9):
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(3, widths[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
        ]
        channels = widths[0]
        for width in widths:
            layers += [
                HomeworkBinaryConv(channels, width, functions, tau),
                nn.BatchNorm2d(width),
                nn.MaxPool2d(2),
            ]
            channels = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean(dim=(2, 3)))


def reference_functions() -> dict:
    """The course's own functions in the form the homework network takes."""
    return {
        "sign": ReferenceSignSTE.apply,
        "xnor_alpha": lambda w: reference_alpha(w).flatten(),
        "recu_clamp": reference_clamp,
    }


def train_homework_network(functions: dict, loaders: Loaders, settings: BnnHomework, seed: int = 0):
    """Train :class:`HomeworkBinaryNet` with Adam (cosine decay); returns (test accuracy,
    seconds). Deterministic for a seed."""
    seed_everything(seed)
    model = HomeworkBinaryNet(functions, settings.widths, settings.tau)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    steps = settings.epochs * len(loaders.train)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    start = time.perf_counter()
    for epoch in range(settings.epochs):
        loaders.train.set_epoch(epoch)
        model.train()
        for x, y in loaders.train:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
    return evaluate(model, loaders.test)[1], time.perf_counter() - start
