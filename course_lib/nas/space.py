"""The search space: candidate ops, the supernet's shape (the paper's Table 1) and one
architecture in it.

A :class:`SearchSpace` fixes what the supernet holds: ``paths`` parallel paths, one block
per level with ``widths[level]`` output channels, each block choosing among ``ops``, a
possible synchronization point after every level, then global average pooling and two
fully connected layers. An :class:`Architecture` is one choice in it: an op per block and,
per level, whether the sync point is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..models import conv_bn_relu

OPS = ("conv3x3", "conv5x5", "sep3x3", "sep5x5")
MERGES = ("conv", "sum")


def kernel_size(op: str) -> int:
    """The k of a ``convKxK`` or ``sepKxK`` op name."""
    check_op(op)
    return int(op[-1])


def check_op(op: str) -> str:
    if op not in OPS:
        raise ValueError(f"unknown op {op!r}: use one of {', '.join(OPS)}")
    return op


def separable_conv(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    """Depthwise k x k conv -> BN -> ReLU -> pointwise 1x1 conv -> BN -> ReLU (MobileNet)."""
    return nn.Sequential(
        nn.Conv2d(
            in_channels,
            in_channels,
            kernel_size,
            padding=kernel_size // 2,
            groups=in_channels,
            bias=False,
        ),
        nn.BatchNorm2d(in_channels),
        nn.ReLU(inplace=True),
        conv_bn_relu(in_channels, out_channels, 1),
    )


def make_op(op: str, in_channels: int, out_channels: int) -> nn.Module:
    """One candidate op: a "same"-padded, stride-1 conv (or separable conv) + BN + ReLU."""
    k = kernel_size(op)
    if op.startswith("sep"):
        return separable_conv(in_channels, out_channels, k)
    return conv_bn_relu(in_channels, out_channels, k)


@dataclass(frozen=True)
class SearchSpace:
    """The supernet's shape. Defaults follow the paper's Table 1 (2 paths, 4 levels of
    8/16/32/64 channels, conv 3x3 or 5x5 per block, 1x1-conv merge at sync points).

    ``pool_after`` lists the levels (0-based) followed by a 2x2 max-pool inside every path
    (default ``None``: every level but the last). The paper's table shows no pooling; the
    course halves the resolution after every level but the last (see the chapter for why).
    ``hidden`` is the width of the first FC layer.
    """

    paths: int = 2
    widths: tuple[int, ...] = (8, 16, 32, 64)
    ops: tuple[str, ...] = ("conv3x3", "conv5x5")
    merge: str = "conv"
    pool_after: tuple[int, ...] | None = None
    hidden: int = 128
    num_classes: int = 10
    in_channels: int = 3
    image_size: int = 32

    def __post_init__(self) -> None:
        if self.paths < 1:
            raise ValueError(f"paths must be >= 1, got {self.paths}")
        if not self.widths or any(w < 1 for w in self.widths):
            raise ValueError(f"widths must be a non-empty tuple of positive ints: {self.widths}")
        if not self.ops:
            raise ValueError("ops must name at least one candidate op")
        for op in self.ops:
            check_op(op)
        if len(set(self.ops)) != len(self.ops):
            raise ValueError(f"ops has duplicates: {self.ops}")
        if self.pool_after is None:
            object.__setattr__(self, "pool_after", tuple(range(self.levels - 1)))
        if self.merge not in MERGES:
            raise ValueError(f"unknown merge {self.merge!r}: use one of {', '.join(MERGES)}")
        if any(not 0 <= level < self.levels for level in self.pool_after):
            raise ValueError(
                f"pool_after {self.pool_after} names levels outside 0..{self.levels - 1}"
            )
        if self.image_size % 2 ** len(set(self.pool_after)):
            raise ValueError(
                f"image_size {self.image_size} cannot be halved {len(self.pool_after)} times"
            )

    @property
    def levels(self) -> int:
        return len(self.widths)

    def in_channels_of(self, level: int) -> int:
        """Input channels of ``level``'s blocks."""
        return self.in_channels if level == 0 else self.widths[level - 1]

    def conv_size(self, level: int) -> int:
        """Height (= width) in pixels of the feature maps ``level``'s ops compute."""
        return self.image_size // 2 ** sum(1 for p in set(self.pool_after) if p < level)

    def out_size(self, level: int) -> int:
        """Height (= width) of ``level``'s output, after its max-pool if it has one."""
        return self.conv_size(level) // (2 if level in self.pool_after else 1)


@dataclass(frozen=True)
class Architecture:
    """One network of a search space: ``ops[level][path]`` and ``syncs[level]`` (True where
    the sync point after that level is kept)."""

    ops: tuple[tuple[str, ...], ...]
    syncs: tuple[bool, ...]

    def check(self, space: SearchSpace) -> Architecture:
        """Raise a ``ValueError`` unless this architecture fits ``space``; return it."""
        if len(self.ops) != space.levels or len(self.syncs) != space.levels:
            raise ValueError(
                f"architecture has {len(self.ops)} op levels and {len(self.syncs)} sync "
                f"points; the space has {space.levels} levels (widths {space.widths})"
            )
        for level, row in enumerate(self.ops):
            if len(row) != space.paths:
                raise ValueError(f"level {level} has {len(row)} ops for {space.paths} paths")
            for op in row:
                check_op(op)
        return self

    @classmethod
    def of(cls, ops: list[list[str]] | tuple, syncs: list[bool] | tuple) -> Architecture:
        return cls(tuple(tuple(row) for row in ops), tuple(bool(s) for s in syncs))

    @classmethod
    def uniform(cls, space: SearchSpace, per_path: tuple[str, ...], syncs=None) -> Architecture:
        """The same op per path at every level (e.g. ``("conv3x3", "conv5x5")``)."""
        if len(per_path) != space.paths:
            raise ValueError(f"{len(per_path)} ops given for {space.paths} paths")
        syncs = (False,) * space.levels if syncs is None else tuple(syncs)
        return cls((tuple(per_path),) * space.levels, syncs).check(space)

    def describe(self) -> list[str]:
        """One cell per level, like the paper's Table 2: ``"conv3x3 - conv5x5, sync"``."""
        return [
            " - ".join(row) + (", sync" if sync else ", no sync")
            for row, sync in zip(self.ops, self.syncs, strict=True)
        ]

    def as_dict(self) -> dict:
        return {"ops": [list(row) for row in self.ops], "syncs": list(self.syncs)}
