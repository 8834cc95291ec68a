"""The supernet: every block holds all candidate ops, every level ends in a soft sync point.

Two kinds of parameters live here. The *weights* (convs, BN, FC) are trained on the
cross-entropy; the *decision variables* ``op_logits[level, path, op]`` and
``sync_logits[level, (sync, direct)]`` choose the architecture:

- eq. 1: ``P_op = softmax(op_logits[l, p])``; eq. 2: the block outputs
  ``sum_n P_op[n] * OP_n(x)``.
- eq. 3: ``(P_sync, P_direct) = softmax(sync_logits[l])``; path ``i`` continues with
  ``P_sync * s + P_direct * B_i(x)``, where ``s`` merges all paths (eq. 4, or a 1x1 conv).

Setting a logit to ``-inf`` makes its probability exactly 0, which is how the tests (and
:func:`course_lib.nas.derive.fix_decisions`) turn the supernet into one architecture exactly.
"""

from __future__ import annotations

import torch
from torch import nn

from .network import Head, Merge
from .space import SearchSpace, make_op

SYNC, DIRECT = 0, 1


def mix(x: torch.Tensor, weights: torch.Tensor, candidates) -> torch.Tensor:
    """Eq. 2: ``sum_n weights[n] * candidates[n](x)``."""
    return sum(w * op(x) for w, op in zip(weights, candidates, strict=True))


class MixedOp(nn.Module):
    """A supernet block: all candidate ops on the same input, weighted by ``P_op`` (eq. 2),
    then the level's 2x2 max-pool if it has one."""

    def __init__(self, ops: tuple[str, ...], in_channels: int, out_channels: int, pool: bool):
        super().__init__()
        self.candidates = nn.ModuleList(make_op(op, in_channels, out_channels) for op in ops)
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return self.pool(mix(x, weights, self.candidates))


class SyncPoint(nn.Module):
    """A soft sync point (eq. 3): every path gets ``P_sync * s + P_direct * x_i``."""

    def __init__(self, merge: str, paths: int, channels: int) -> None:
        super().__init__()
        self.merge = Merge(merge, paths, channels)

    @staticmethod
    def mix(s: torch.Tensor, xs: list[torch.Tensor], probs: torch.Tensor) -> list[torch.Tensor]:
        """Eq. 3: ``P_sync * s + P_direct * x_i`` for every path's ``x_i``."""
        return [probs[SYNC] * s + probs[DIRECT] * x for x in xs]

    def forward(self, xs: list[torch.Tensor], probs: torch.Tensor) -> list[torch.Tensor]:
        return self.mix(self.merge(xs), xs, probs)


class SuperNet(nn.Module):
    """The parallel-path supernet of a :class:`SearchSpace` (the paper's Table 1)."""

    def __init__(self, space: SearchSpace) -> None:
        super().__init__()
        self.space = space
        self.blocks = nn.ModuleList(
            nn.ModuleList(
                MixedOp(
                    space.ops,
                    space.in_channels_of(level),
                    space.widths[level],
                    level in space.pool_after,
                )
                for _ in range(space.paths)
            )
            for level in range(space.levels)
        )
        self.sync_points = nn.ModuleList(
            SyncPoint(space.merge, space.paths, width) for width in space.widths
        )
        self.head = Head(space.paths, space.widths[-1], space.hidden, space.num_classes)
        self.op_logits = nn.Parameter(torch.zeros(space.levels, space.paths, len(space.ops)))
        self.sync_logits = nn.Parameter(torch.zeros(space.levels, 2))

    def op_probs(self) -> torch.Tensor:
        """``P_op`` (eq. 1), shape (levels, paths, ops); sums to one over the last axis."""
        return torch.softmax(self.op_logits.float(), dim=-1)

    def sync_probs(self) -> torch.Tensor:
        """``(P_sync, P_direct)`` per level (eq. 3), shape (levels, 2)."""
        return torch.softmax(self.sync_logits.float(), dim=-1)

    def arch_parameters(self) -> list[nn.Parameter]:
        """The decision variables."""
        return [self.op_logits, self.sync_logits]

    def weight_parameters(self) -> list[nn.Parameter]:
        """Everything else: convs, BatchNorm, FC layers."""
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        op_probs, sync_probs = self.op_probs(), self.sync_probs()
        xs = [x] * self.space.paths
        for level, blocks in enumerate(self.blocks):
            xs = [
                block(h, op_probs[level, path])
                for path, (block, h) in enumerate(zip(blocks, xs, strict=True))
            ]
            xs = self.sync_points[level](xs, sync_probs[level])
        return self.head(xs)
