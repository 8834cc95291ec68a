"""Checks and settings of the NAS assignment (``assignments/source/nas``).

Students write the mixed op (eq. 1-2), the sync point (eq. 3-4), the cost formulas (eq.
7-10), the normalized op cost (eq. 6), the sync loss (eq. 11), the total loss (eq. 12) and
the derivation of a network from the decision variables. Every check compares their
function with the course's own (:mod:`course_lib.nas`) on fixed and on random inputs.
Exact checks: operation counts (integers) and derived architectures. Tolerance bands:
floating-point outputs (``FLOAT_TOLERANCE``, far below any mistake the checks look for)
and the accuracy of the retrained network (``NAS_MIN_ACCURACY``, well above chance).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import nn

from ..data import DataSettings
from ..nas import costs
from ..nas.derive import decide
from ..nas.network import Merge
from ..nas.search import SearchConfig
from ..nas.settings import search_config
from ..nas.space import Architecture, SearchSpace, make_op
from ..nas.supernet import SyncPoint, mix
from ..profiles import check_profile
from ..train import TrainConfig
from .checks import CheckFailed

#: Absolute tolerance of floating-point results (outputs of the mixed op, cost losses).
FLOAT_TOLERANCE = 1e-5

#: The retrained derived network must beat chance (10 %) clearly: it catches a network that
#: does not learn (e.g. a broken derivation), not a slow laptop.
NAS_MIN_ACCURACY = 0.18

#: (k, w_out, h_out, d_in, d_out) of the convolutions the hidden tests count.
CONV_CASES = ((3, 32, 32, 3, 8), (5, 16, 16, 8, 16), (1, 8, 8, 128, 64), (5, 4, 6, 7, 3))
#: (inputs, outputs) of the fully connected layers the hidden tests count.
FC_CASES = ((128, 128), (128, 10), (1, 1), (7, 3))


@dataclass(frozen=True)
class NasHomework:
    """What the NAS assignment runs: data subsets, the supernet, the search (one per beta)
    and the second training of the derived network (from the search's weights)."""

    data: DataSettings
    space: SearchSpace
    search: SearchConfig
    betas: tuple[float, ...]
    retrain: TrainConfig

    def search_for(self, beta: float) -> SearchConfig:
        return replace(self.search, beta=beta)


NAS_HOMEWORK = {
    # graded: a few minutes on a laptop CPU
    "quick": NasHomework(
        data=DataSettings(train_per_class=150, val_per_class=50, test_per_class=100, batch_size=64),
        space=SearchSpace(widths=(8, 16, 32, 64)),
        search=search_config(epochs=1),
        betas=(0.001, 1.0),
        retrain=TrainConfig(epochs=2, lr=0.1, label_smoothing=0.1, channels_last=False),
    ),
    # all of CIFAR-10, the chapter's full-profile space (about half an hour on 2 cores)
    "full": NasHomework(
        data=DataSettings(),
        space=SearchSpace(widths=(24, 48, 96, 192)),
        search=search_config(epochs=2),
        betas=(0.001, 0.01, 0.1, 1.0),
        retrain=TrainConfig(epochs=4, lr=0.1, label_smoothing=0.1),
    ),
}


def nas_homework(profile: str) -> NasHomework:
    """The settings of the NAS assignment for ``profile`` ("quick" or "full")."""
    return NAS_HOMEWORK[check_profile(profile)]


# --- the mixed op (eq. 1-2) --------------------------------------------------------------

MixedOpFn = Callable[[torch.Tensor, torch.Tensor, list[nn.Module]], torch.Tensor]


def reference_mixed_op(
    x: torch.Tensor, logits: torch.Tensor, candidates: list[nn.Module]
) -> torch.Tensor:
    """Eq. 1-2: ``sum_n softmax(logits)[n] * candidates[n](x)``."""
    return mix(x, torch.softmax(logits, dim=0), candidates)


def _candidates(ops: tuple[str, ...], d_in: int, d_out: int, seed: int) -> list[nn.Module]:
    torch.manual_seed(seed)
    return [make_op(op, d_in, d_out).eval() for op in ops]


def _check_close(got: torch.Tensor, want: torch.Tensor, what: str) -> None:
    if not isinstance(got, torch.Tensor) or got.shape != want.shape:
        shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        raise CheckFailed(f"{what}: got {shape}, expected a tensor of shape {tuple(want.shape)}")
    error = (got.detach() - want.detach()).abs().max().item()
    if error > FLOAT_TOLERANCE:
        raise CheckFailed(f"{what}: differs from the expected output by up to {error:.3g}")


def check_mixed_op(
    mixed_op: MixedOpFn,
    ops: tuple[str, ...] = ("conv3x3", "conv5x5"),
    channels: tuple[int, int] = (3, 8),
    seed: int = 0,
) -> None:
    """``mixed_op(x, logits, candidates)`` is eq. 1-2 for random logits, the plain mean for
    equal logits, exactly one op for one-hot logits (the others ``-inf``), and passes
    gradients to the logits."""
    candidates = _candidates(ops, *channels, seed)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(2, channels[0], 8, 8, generator=generator)
    with torch.no_grad():
        outputs = [op(x) for op in candidates]
        random = torch.randn(len(ops), generator=generator) * 2
        _check_close(
            mixed_op(x, random, candidates),
            reference_mixed_op(x, random, candidates),
            f"mixed_op with logits {[round(v, 2) for v in random.tolist()]}: the outputs "
            f"weighted by softmax(logits) (eq. 1-2)",
        )
        _check_close(
            mixed_op(x, torch.zeros(len(ops)), candidates),
            sum(outputs) / len(ops),
            "mixed_op with equal logits: the mean of the candidates' outputs",
        )
        for chosen in range(len(ops)):
            one_hot = torch.full((len(ops),), float("-inf"))
            one_hot[chosen] = 0.0
            _check_close(
                mixed_op(x, one_hot, candidates),
                outputs[chosen],
                f"mixed_op with logits {one_hot.tolist()}: exactly candidate {chosen}'s output",
            )
    if len(ops) == 1:  # a softmax over one logit is constant: no gradient to check
        return
    logits = torch.zeros(len(ops), requires_grad=True)
    mixed_op(x, logits, candidates).square().mean().backward()
    if logits.grad is None or not torch.isfinite(logits.grad).all() or logits.grad.abs().sum() == 0:
        raise CheckFailed(
            "mixed_op passes no gradient to the logits: compute the weights with "
            "torch.softmax on the logits tensor itself (no .item(), .detach() or numpy)"
        )


# --- operation counts (eq. 7-10) and the op cost (eq. 6) ---------------------------------


def _check_count(got, want: int, what: str, formula: str) -> None:
    if isinstance(got, torch.Tensor):
        got = got.item()
    if got != want:
        raise CheckFailed(f"{what} = {got!r}, expected {want:,} ({formula})")


def check_cost_formulas(
    conv_mults: Callable[..., int],
    conv_adds: Callable[..., int],
    fc_mults: Callable[[int, int], int],
    fc_adds: Callable[[int, int], int],
    conv_cases=CONV_CASES,
    fc_cases=FC_CASES,
) -> None:
    """Every count equals eq. 7-10 exactly on ``conv_cases`` (k, w_out, h_out, d_in, d_out)
    and ``fc_cases`` (inputs, outputs)."""
    for case in conv_cases:
        _check_count(conv_mults(*case), costs.conv_mults(*case), f"conv_mults{case}", "eq. 7")
        _check_count(conv_adds(*case), costs.conv_adds(*case), f"conv_adds{case}", "eq. 8")
    for case in fc_cases:
        _check_count(fc_mults(*case), costs.fc_mults(*case), f"fc_mults{case}", "eq. 9")
        _check_count(fc_adds(*case), costs.fc_adds(*case), f"fc_adds{case}", "eq. 10")


def check_cost_table(cost_table: Callable[[SearchSpace], torch.Tensor], space: SearchSpace) -> None:
    """``cost_table(space)[l, p, n]`` is the FLOPs (multiplications + additions) of op
    ``n`` of path ``p`` at level ``l``, exactly."""
    want = costs.op_cost_table(space)
    got = cost_table(space)
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(want.shape):
        shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        raise CheckFailed(
            f"cost_table: got {shape}, expected a tensor of shape (levels, paths, ops) = "
            f"{tuple(want.shape)}"
        )
    for level, path, n in itertools.product(*(range(s) for s in want.shape)):
        if got[level, path, n].item() != want[level, path, n].item():
            raise CheckFailed(
                f"cost_table[{level}, {path}, {n}] ({space.ops[n]} at level {level}, "
                f"{space.in_channels_of(level)} -> {space.widths[level]} channels, "
                f"{space.conv_size(level)}x{space.conv_size(level)} pixels) is "
                f"{got[level, path, n].item():,.0f}, expected {want[level, path, n].item():,.0f} "
                f"multiplications + additions. Mind the resolution after each max-pool."
            )


def check_ops_loss(
    ops_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    space: SearchSpace,
    seed: int = 0,
) -> None:
    """``ops_loss(op_probs, table)`` is eq. 6 (expected cost over the largest one) for random
    probabilities, 1 when every block picks its most expensive op, and differentiable."""
    table = costs.op_cost_table(space)
    generator = torch.Generator().manual_seed(seed)
    for trial in range(3):
        logits = torch.randn(table.shape, generator=generator, dtype=torch.float64) * (1 + trial)
        probs = torch.softmax(logits, dim=-1).requires_grad_(True)
        got = ops_loss(probs, table)
        want = costs.ops_loss(probs.detach(), table)
        if not isinstance(got, torch.Tensor) or got.numel() != 1:
            raise CheckFailed(f"ops_loss must return a one-element tensor, got {got!r}")
        if abs(got.item() - want.item()) > FLOAT_TOLERANCE:
            raise CheckFailed(
                f"ops_loss = {got.item():.6f}, expected {want.item():.6f}: the expected FLOPs "
                f"sum(P * C) over all blocks, divided by the sum over blocks of each block's "
                f"most expensive op (eq. 6)"
            )
        got.backward()
        if probs.grad is None or probs.grad.abs().sum() == 0:
            raise CheckFailed("ops_loss passes no gradient to the probabilities")
    most_expensive = nn.functional.one_hot(table.argmax(dim=-1), table.shape[-1]).double()
    value = ops_loss(most_expensive, table).item()
    if abs(value - 1.0) > FLOAT_TOLERANCE:
        raise CheckFailed(f"ops_loss is {value:.6f} when every block picks its costliest op: 1")


# --- the sync point (eq. 3-4), the sync loss (eq. 11) and the total loss (eq. 12) ------------

SyncPointFn = Callable[[list[torch.Tensor], torch.Tensor, Callable], list[torch.Tensor]]


def reference_sync_point(
    xs: list[torch.Tensor], logits: torch.Tensor, merge: Callable
) -> list[torch.Tensor]:
    """Eq. 3: every path continues with ``P_sync * merge(xs) + P_direct * x_i``, where
    ``(P_sync, P_direct) = softmax(logits)``."""
    return SyncPoint.mix(merge(xs), xs, torch.softmax(logits, dim=0))


def _check_paths(got, want: list[torch.Tensor], what: str) -> None:
    if not isinstance(got, list | tuple) or len(got) != len(want):
        raise CheckFailed(
            f"{what}: expected a list of {len(want)} tensors (one per path), got {got!r:.80}"
        )
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        _check_close(g, w, f"{what}, path {i}")


def check_sync_point(
    sync_point: SyncPointFn, merge: str = "conv", paths: int = 2, channels: int = 4, seed: int = 0
) -> None:
    """``sync_point(xs, logits, merge)`` is eq. 3 for random logits with a 1x1-conv or a sum
    merge (eq. 4); ``logits`` ``[0, -inf]`` gives every path the merge exactly,
    ``[-inf, 0]`` leaves every path as it was; gradients reach the logits."""
    torch.manual_seed(seed)
    module = Merge(merge, paths, channels).eval()
    generator = torch.Generator().manual_seed(seed)
    xs = [torch.randn(2, channels, 5, 5, generator=generator) for _ in range(paths)]
    with torch.no_grad():
        s = module(xs)
        logits = torch.randn(2, generator=generator) * 2
        _check_paths(
            sync_point(xs, logits, module),
            reference_sync_point(xs, logits, module),
            f"sync_point with logits {[round(v, 2) for v in logits.tolist()]} (eq. 3: "
            f"P_sync * s + P_direct * x_i, (P_sync, P_direct) = softmax(logits), sync first)",
        )
        inf = float("inf")
        _check_paths(
            sync_point(xs, torch.tensor([0.0, -inf]), module),
            [s] * paths,
            "sync_point with logits [0, -inf]: every path continues with the merge s",
        )
        _check_paths(
            sync_point(xs, torch.tensor([-inf, 0.0]), module),
            xs,
            "sync_point with logits [-inf, 0]: every path continues with its own output",
        )
    logits = torch.zeros(2, requires_grad=True)
    sum(o.square().sum() for o in sync_point(xs, logits, module)).backward()
    if logits.grad is None or not torch.isfinite(logits.grad).all() or logits.grad.abs().sum() == 0:
        raise CheckFailed(
            "sync_point passes no gradient to the logits: compute the probabilities with "
            "torch.softmax on the logits tensor itself"
        )


def check_sync_loss(
    sync_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    space: SearchSpace,
    seed: int = 0,
) -> None:
    """``sync_loss(sync_probs, table)`` is eq. 11 over the cost of keeping every sync point,
    for random probabilities; 1 when every point syncs, 0 when none does; differentiable."""
    table = costs.sync_cost_table(space)
    generator = torch.Generator().manual_seed(seed)
    for trial in range(3):
        logits = torch.randn(space.levels, 2, generator=generator, dtype=torch.float64) * (
            1 + trial
        )
        probs = torch.softmax(logits, dim=-1).requires_grad_(True)
        got = sync_loss(probs, table)
        want = costs.sync_loss(probs.detach(), table)
        if not isinstance(got, torch.Tensor) or got.numel() != 1:
            raise CheckFailed(f"sync_loss must return a one-element tensor, got {got!r:.80}")
        if abs(got.item() - want.item()) > FLOAT_TOLERANCE:
            raise CheckFailed(
                f"sync_loss = {got.item():.6f}, expected {want.item():.6f}: sum over sync points "
                f"of P_sync (column 0) * C_sync, divided by the sum of all C_sync (eq. 11)"
            )
        got.backward()
        if probs.grad is None or probs.grad.abs().sum() == 0:
            raise CheckFailed("sync_loss passes no gradient to the probabilities")
    for column, value in ((0, 1.0), (1, 0.0)):
        probs = nn.functional.one_hot(torch.full((space.levels,), column), 2).double()
        got = sync_loss(probs, table).item()
        if abs(got - value) > FLOAT_TOLERANCE:
            what = "every" if column == 0 else "no"
            raise CheckFailed(
                f"sync_loss is {got:.6f} when {what} sync point is kept: expected {value}"
            )


def check_total_loss(total_loss: Callable[..., torch.Tensor], seed: int = 0) -> None:
    """``total_loss(ce, loss_ops, loss_sync, alpha, beta)`` is eq. 12 for random values,
    and passes gradients to all three terms."""
    generator = torch.Generator().manual_seed(seed)
    for _ in range(4):
        ce, l_ops, l_sync = (
            torch.rand((), generator=generator, dtype=torch.float64) * 3 for _ in range(3)
        )
        alpha, beta = (float(v) for v in torch.rand(2, generator=generator) + 0.01)
        terms = [t.clone().requires_grad_(True) for t in (ce, l_ops, l_sync)]
        got = total_loss(*terms, alpha, beta)
        want = costs.total_loss(ce, l_ops, l_sync, alpha, beta)
        if not isinstance(got, torch.Tensor) or abs(got.item() - want.item()) > FLOAT_TOLERANCE:
            value = got.item() if isinstance(got, torch.Tensor) else got
            raise CheckFailed(
                f"total_loss(ce={ce.item():.3f}, loss_ops={l_ops.item():.3f}, loss_sync="
                f"{l_sync.item():.3f}, alpha={alpha:.3f}, beta={beta:.3f}) = {value!r:.10}, "
                f"expected {want.item():.6f}: alpha * ce + beta * (loss_ops + loss_sync) (eq. 12)"
            )
        got.backward()
        if any(t.grad is None for t in terms):
            raise CheckFailed("total_loss must pass gradients to ce, loss_ops and loss_sync")


# --- derivation ----------------------------------------------------------------------------

DeriveFn = Callable[[torch.Tensor, torch.Tensor, tuple[str, ...]], Architecture]


def check_derived(got, op_logits, sync_logits, ops, what: str = "derive") -> None:
    """``got`` is the architecture the decision variables point at (exact)."""
    want = decide(op_logits, sync_logits, ops)
    if not isinstance(got, Architecture):
        raise CheckFailed(f"{what} returned {type(got).__name__}, expected an Architecture")
    if got.ops != want.ops:
        raise CheckFailed(
            f"{what}: ops {[list(r) for r in got.ops]}, expected {[list(r) for r in want.ops]} "
            f"(the op of largest probability in every block, op_logits[level, path])"
        )
    if got.syncs != want.syncs:
        raise CheckFailed(
            f"{what}: syncs {list(got.syncs)}, expected {list(want.syncs)} (a sync point "
            f"where P_sync > P_direct; column 0 of sync_logits is 'sync')"
        )


def check_derive(derive: DeriveFn, space: SearchSpace, trials: int = 5, seed: int = 0) -> None:
    """``derive(op_logits, sync_logits, ops)`` matches the course's derivation on random
    decision variables of ``space``'s shape."""
    generator = torch.Generator().manual_seed(seed)
    for trial in range(trials):
        op_logits = torch.randn(space.levels, space.paths, len(space.ops), generator=generator)
        sync_logits = torch.randn(space.levels, 2, generator=generator)
        got = derive(op_logits.clone(), sync_logits.clone(), space.ops)
        check_derived(got, op_logits, sync_logits, space.ops, f"derive (random trial {trial})")
