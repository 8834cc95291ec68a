"""The derived network: P parallel paths of plain blocks that meet only at the kept sync
points, then global average pooling and two fully connected layers. No softmax, no
decision variables, no unused ops: what the search chose, as a standalone ``nn.Module``.

:class:`Merge` and :class:`Head` are shared with the supernet so that a derived network can
take over the supernet's weights exactly (see :func:`course_lib.nas.derive.extract_network`).
"""

from __future__ import annotations

import torch
from torch import nn

from ..models import conv_bn_relu
from .space import MERGES, Architecture, SearchSpace, make_op


class Merge(nn.Module):
    """What the paths exchange at a sync point (the paper's ``s``, eq. 3-4).

    ``"sum"``: the element-wise sum of the paths' outputs (eq. 4). ``"conv"``: a 1x1 conv
    (+ BN + ReLU) over their concatenation, mapping ``paths * channels`` back to
    ``channels`` (the paper's experiments). Height and width are unchanged.
    """

    def __init__(self, kind: str, paths: int, channels: int) -> None:
        super().__init__()
        if kind not in MERGES:
            raise ValueError(f"unknown merge {kind!r}: use one of {', '.join(MERGES)}")
        self.kind, self.paths, self.channels = kind, paths, channels
        self.conv = conv_bn_relu(paths * channels, channels, 1) if kind == "conv" else None

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        if len(xs) != self.paths:
            raise ValueError(f"merge expects {self.paths} inputs, got {len(xs)}")
        if not torch.jit.is_tracing() and any(x.shape[1] != self.channels for x in xs):
            widths = [x.shape[1] for x in xs]
            raise ValueError(
                f"mismatched widths at a sync point: {widths}, expected {self.channels}"
            )
        if self.conv is None:
            out = xs[0]
            for x in xs[1:]:
                out = out + x
            return out
        return self.conv(torch.cat(xs, dim=1))


class Head(nn.Module):
    """Global average pooling of every path, concatenated, then FC -> ReLU -> FC.

    After a kept sync point at the last level every path holds the same merged map, so the
    concatenation holds ``paths`` copies of it: the first FC layer's weights for the copies
    act as one sum (more parameters, no more information). Kept as the paper builds it."""

    def __init__(self, paths: int, channels: int, hidden: int, num_classes: int) -> None:
        super().__init__()
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Sequential(
            nn.Linear(paths * channels, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return self.classifier(torch.cat([self.pool(x) for x in xs], dim=1))


def path_block(op: str, space: SearchSpace, level: int) -> nn.Sequential:
    """One path's block at ``level``: the op, then a 2x2 max-pool where the space has one."""
    layers = [make_op(op, space.in_channels_of(level), space.widths[level])]
    if level in space.pool_after:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class ParallelNet(nn.Module):
    """A derived network. ``blocks[level][path]`` are plain blocks; ``merges[str(level)]``
    exists only for the kept sync points. The forward pass runs the paths one after another;
    :mod:`course_lib.nas.parallel` runs them concurrently."""

    def __init__(self, space: SearchSpace, arch: Architecture) -> None:
        super().__init__()
        self.space, self.arch = space, arch.check(space)
        self.blocks = nn.ModuleList(
            nn.ModuleList(path_block(op, space, level) for op in arch.ops[level])
            for level in range(space.levels)
        )
        self.merges = nn.ModuleDict(
            {
                str(level): Merge(space.merge, space.paths, space.widths[level])
                for level in range(space.levels)
                if arch.syncs[level]
            }
        )
        self.head = Head(space.paths, space.widths[-1], space.hidden, space.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xs = [x] * self.space.paths
        for level, blocks in enumerate(self.blocks):
            xs = [block(h) for block, h in zip(blocks, xs, strict=True)]
            if str(level) in self.merges:
                xs = [self.merges[str(level)](xs)] * self.space.paths
        return self.head(xs)
