"""What an op costs (eq. 7-10) and the cost terms of the search loss (eq. 6, 11, 12).

Two prices for a sync point (eq. 11's ``C_sync``). The default counts the FLOPs of its
merge and, as the paper says both terms are normalized, divides the sync term by its own
maximum: it then weighs as much as all the ops together, so one 1x1 merge can outweigh
switching a whole 5x5 level to 3x3. The paper defines ``C_sync`` as *time*: the hand-off
of the threads plus the merge. :func:`measured_sync_costs` turns a measured time into op
FLOPs that the cores could have computed meanwhile, and :func:`cost_tables` then prices
both terms in that one currency, over the ops' normalizer.

Eq. 11 sums over ``l = 1 .. L-1``, sync points *between* levels; the paper's Table 2 and
Fig. 6 also place one after the last level, so the course sums over all ``L`` points of
the space. After a kept final point every path carries the same merged map, and the head
concatenates ``P`` copies of it (:class:`course_lib.nas.network.Head`).

Units. The paper counts multiplications and additions separately; here ``mults`` is the
number of multiplications (= MACs, what :mod:`course_lib.measure` counts) and ``flops`` is
multiplications + additions (about 2 x MACs). Convolutions have no bias (BatchNorm follows
them), so eq. 8 counts the ``k^2 D_i - 1`` additions that sum ``k^2 D_i`` products. BN, ReLU
and pooling are not counted, as in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .space import Architecture, SearchSpace, kernel_size


@dataclass(frozen=True)
class OpCost:
    """Multiplications and additions of one forward pass of one image."""

    mults: int
    adds: int

    @property
    def flops(self) -> int:
        return self.mults + self.adds

    def __add__(self, other: OpCost) -> OpCost:
        return OpCost(self.mults + other.mults, self.adds + other.adds)


def conv_mults(k: int, w_out: int, h_out: int, d_in: int, d_out: int, groups: int = 1) -> int:
    """Eq. 7: ``k^2 D_i W_o H_o D_o`` (``D_i / groups`` inputs per output for grouped convs)."""
    return k * k * (d_in // groups) * w_out * h_out * d_out


def conv_adds(k: int, w_out: int, h_out: int, d_in: int, d_out: int, groups: int = 1) -> int:
    """Eq. 8: ``(k^2 D_i - 1) W_o H_o D_o`` (sums of ``k^2 D_i / groups`` products)."""
    return (k * k * (d_in // groups) - 1) * w_out * h_out * d_out


def fc_mults(i: int, o: int) -> int:
    """Eq. 9: ``O * I``."""
    return o * i


def fc_adds(i: int, o: int) -> int:
    """Eq. 10: ``O * (I - 1)``."""
    return o * (i - 1)


def conv_cost(k: int, size: int, d_in: int, d_out: int, groups: int = 1) -> OpCost:
    """A stride-1 "same" conv with a ``size`` x ``size`` output."""
    return OpCost(
        conv_mults(k, size, size, d_in, d_out, groups),
        conv_adds(k, size, size, d_in, d_out, groups),
    )


def op_cost(op: str, d_in: int, d_out: int, size: int) -> OpCost:
    """One candidate op at a ``size`` x ``size`` resolution (a separable conv is a depthwise
    k x k conv plus a pointwise 1x1 conv)."""
    k = kernel_size(op)
    if op.startswith("sep"):
        return conv_cost(k, size, d_in, d_in, groups=d_in) + conv_cost(1, size, d_in, d_out)
    return conv_cost(k, size, d_in, d_out)


def merge_cost(space: SearchSpace, level: int) -> OpCost:
    """The merge ``s`` at the sync point after ``level``: a 1x1 conv over the concatenated
    paths, or ``paths - 1`` element-wise additions."""
    size, width = space.out_size(level), space.widths[level]
    if space.merge == "sum":
        return OpCost(0, (space.paths - 1) * width * size * size)
    return conv_cost(1, size, space.paths * width, width)


def head_cost(space: SearchSpace) -> OpCost:
    """The two FC layers (the pooling is not counted)."""
    features = space.paths * space.widths[-1]
    return OpCost(
        fc_mults(features, space.hidden) + fc_mults(space.hidden, space.num_classes),
        fc_adds(features, space.hidden) + fc_adds(space.hidden, space.num_classes),
    )


def op_cost_table(space: SearchSpace) -> torch.Tensor:
    """``C[l, p, n]`` of eq. 6: FLOPs of candidate ``n`` in path ``p`` at level ``l``."""
    return torch.tensor(
        [
            [
                [
                    op_cost(
                        op, space.in_channels_of(level), space.widths[level], space.conv_size(level)
                    ).flops
                    for op in space.ops
                ]
                for _ in range(space.paths)
            ]
            for level in range(space.levels)
        ],
        dtype=torch.float64,
    )


def sync_cost_table(space: SearchSpace) -> torch.Tensor:
    """``C_sync`` per sync point (eq. 11): FLOPs of computing the merge, the paper's "time
    to combine the paths' outputs, assuming balanced paths"."""
    return torch.tensor(
        [float(merge_cost(space, level).flops) for level in range(space.levels)],
        dtype=torch.float64,
    )


def measured_sync_costs(sync_ms: list[float], flops_per_ms: float) -> tuple[float, ...]:
    """``C_sync`` per sync point priced by time (the paper's definition): a measured time
    per point (milliseconds: thread hand-off + merge) times the ops' measured throughput
    (FLOPs per millisecond), i.e. the op FLOPs the cores could have run meanwhile."""
    if flops_per_ms <= 0 or any(ms < 0 for ms in sync_ms):
        raise ValueError(f"need times >= 0 and a throughput > 0: {sync_ms}, {flops_per_ms}")
    return tuple(float(ms * flops_per_ms) for ms in sync_ms)


def cost_tables(
    space: SearchSpace, sync_costs: tuple[float, ...] | None = None
) -> tuple[torch.Tensor, torch.Tensor, float | None]:
    """``(C[l, p, n], C_sync[l], sync_scale)`` of the search loss. Without ``sync_costs``:
    merge FLOPs, the sync term normalized by itself (``sync_scale`` None). With them (one
    op-FLOP equivalent per level, :func:`measured_sync_costs`): both terms share the ops'
    normalizer, so a sync point weighs what its time is worth in op FLOPs."""
    ops = op_cost_table(space)
    if sync_costs is None:
        return ops, sync_cost_table(space), None
    if len(sync_costs) != space.levels:
        raise ValueError(f"{len(sync_costs)} sync costs for {space.levels} sync points")
    return ops, torch.tensor(sync_costs, dtype=torch.float64), float(ops.amax(dim=-1).sum())


def ops_loss(op_probs: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Eq. 6: expected op FLOPs, normalized by the most expensive choice (so in (0, 1])."""
    table = table.to(op_probs)
    return (op_probs * table).sum() / table.amax(dim=-1).sum()


def sync_loss(
    sync_probs: torch.Tensor, table: torch.Tensor, scale: float | None = None
) -> torch.Tensor:
    """Eq. 11: expected sync cost over ``scale`` (default: the cost of keeping every sync
    point, so in [0, 1]). ``sync_probs`` is (levels, 2) with ``P_sync`` in column 0."""
    table = table.to(sync_probs)
    denominator = table.sum().clamp_min(1.0) if scale is None else scale
    return (sync_probs[:, 0] * table).sum() / denominator


def total_loss(
    cross_entropy: torch.Tensor,
    loss_ops: torch.Tensor,
    loss_sync: torch.Tensor,
    alpha: float,
    beta: float,
) -> torch.Tensor:
    """Eq. 12: ``alpha * CE + beta * (loss_ops + loss_sync)``."""
    return alpha * cross_entropy + beta * (loss_ops + loss_sync)


def architecture_cost(space: SearchSpace, arch: Architecture) -> OpCost:
    """Multiplications and additions of a derived network (ops, kept merges, FC head).
    Its ``mults`` equals :func:`course_lib.measure.count_macs` of the built network."""
    arch.check(space)
    total = head_cost(space)
    for level in range(space.levels):
        size = space.conv_size(level)
        for op in arch.ops[level]:
            total = total + op_cost(op, space.in_channels_of(level), space.widths[level], size)
        if arch.syncs[level]:
            total = total + merge_cost(space, level)
    return total
