"""Where do parallel paths pay off? Every way of using two cores, side by side.

The paper's claim: a network of ``P`` independent paths runs on ``P`` cores up to ``P``
times faster than its paths one after the other. The alternative needs no special
network: ONNX Runtime splits every op over the cores (intra-op threads), or runs
independent nodes at once (``ORT_PARALLEL``). :func:`measure_cell` times one network at
one batch size in every way, interleaved (:func:`course_lib.measure.compare`):

- ``sequential`` / ``path-parallel``: the frozen TorchScript network with its paths run in
  sequence on one thread, or forked one per core (:class:`~course_lib.nas.forked.ForkExecutor`);
- ``sessions, sequential`` / ``sessions, parallel``: one ONNX Runtime session per path
  and stage, driven from Python threads (:class:`~course_lib.nas.parallel.PathExecutor`);
- ``onnx, 1 thread`` / ``onnx, P intra-op`` / ``ORT_PARALLEL``: the whole graph in ONNX
  Runtime on one thread, on ``P`` intra-op threads, or with its parallel executor;
- for the best searched network also ``single path, ...``: one path of (almost) the same
  MACs (:func:`~course_lib.nas.parallel.single_path_twin`), what one would deploy without
  this chapter.

:func:`parallel_table` runs the grid the chapter reports: the paper's and the course's
widths, batch 1 and 16, the best searched network (with and without its sync points) and
balanced and unbalanced ones. Weights are random: latency does not depend on them.
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .. import measure
from ..measure import Runner
from .costs import (
    architecture_cost,
    head_cost,
    measured_sync_costs,
    merge_cost,
    op_cost,
    op_cost_table,
    sync_cost_table,
)
from .forked import (
    ForkExecutor,
    fork_runner,
    frozen_block,
    frozen_join,
    handoff_cost,
    native_kernels,
)
from .network import Merge, ParallelNet, path_block
from .parallel import PathExecutor, executor_runner, single_path_twin
from .space import Architecture, SearchSpace

#: name -> (candidate, baseline) of every speed-up a cell reports.
SPEEDUPS = {
    "path-parallel": ("path-parallel", "sequential"),
    "sessions": ("sessions, parallel", "sessions, sequential"),
    "intra-op": ("onnx, P intra-op", "onnx, 1 thread"),
    "ORT_PARALLEL": ("ORT_PARALLEL", "onnx, 1 thread"),
    "path-parallel vs onnx": ("path-parallel", "onnx, 1 thread"),
    "path-parallel vs single path": ("path-parallel", "single path, onnx, 1 thread"),
    "intra-op vs single path": ("onnx, P intra-op", "single path, onnx, P intra-op"),
}
#: calls per round by batch size (about the same time per round).
CALLS = {1: 10, 16: 2}


def balanced(space: SearchSpace, op: str = "conv5x5", syncs: bool = False) -> Architecture:
    """``op`` on every path at every level; every sync point kept or none."""
    return Architecture.uniform(space, (op,) * space.paths, (syncs,) * space.levels)


def networks(best: Architecture, space: SearchSpace) -> dict[str, Architecture]:
    """The networks of the table, at ``space``'s widths."""
    mixed = ("conv3x3", "conv5x5") + ("conv5x5",) * (space.paths - 2)
    return {
        "best searched": best,
        "best searched, no sync": Architecture(best.ops, (False,) * space.levels),
        "balanced 5x5, no sync": balanced(space),
        "balanced 5x5, all syncs": balanced(space, syncs=True),
        "3x3 / 5x5, no sync": Architecture.uniform(space, mixed[: space.paths]),
    }


def parallel_bound(space: SearchSpace, arch: Architecture) -> float:
    """The speed-up of running the paths at once if only FLOPs counted: per stage, the sum
    of the paths' FLOPs over the largest; merges and head count in both (one core)."""
    serial, total, longest, stage = float(head_cost(space).flops), 0.0, 0.0, []
    for level in range(space.levels):
        size = space.conv_size(level)
        stage.append(
            [
                op_cost(op, space.in_channels_of(level), space.widths[level], size).flops
                for op in arch.ops[level]
            ]
        )
        if arch.syncs[level] or level == space.levels - 1:
            paths = [sum(blocks) for blocks in zip(*stage, strict=True)]
            total, longest, stage = total + sum(paths), longest + max(paths), []
        if arch.syncs[level]:
            serial += merge_cost(space, level).flops
    return (total + serial) / (longest + serial)


def _net(space: SearchSpace, arch: Architecture) -> ParallelNet:
    torch.manual_seed(0)
    return ParallelNet(space, arch).eval()


class Candidates:
    """Every way of running one network (built once, batch-size agnostic); a context
    manager, because the session executors hold threads."""

    def __init__(self, space: SearchSpace, arch: Architecture, twin: bool = False) -> None:
        self.stack = contextlib.ExitStack()
        net, p = _net(space, arch), space.paths
        self.fork = {
            "sequential": ForkExecutor(net, parallel=False),
            "path-parallel": ForkExecutor(net),
        }
        self.sessions = {
            "sessions, sequential": self.stack.enter_context(PathExecutor(net, parallel=False)),
            "sessions, parallel": self.stack.enter_context(PathExecutor(net)),
        }
        folder = Path(self.stack.enter_context(tempfile.TemporaryDirectory()))
        self.onnx = {"": measure.export_onnx(net, folder / "net.onnx")}
        if twin:
            self.onnx["single path, "] = measure.export_onnx(
                _net(*single_path_twin(space, arch)), folder / "twin.onnx"
            )
        self.paths = p

    def runners(self, batch: int) -> dict[str, Runner]:
        result = {name: fork_runner(ex, batch) for name, ex in self.fork.items()}
        result |= {name: executor_runner(ex, batch) for name, ex in self.sessions.items()}
        for prefix, path in self.onnx.items():
            result[f"{prefix}onnx, 1 thread"] = measure.onnx_runner(path, batch)
            result[f"{prefix}onnx, P intra-op"] = measure.onnx_runner(
                path, batch, threads=self.paths
            )
        result["ORT_PARALLEL"] = measure.onnx_runner(
            self.onnx[""], batch, threads=self.paths, parallel=True
        )
        return result

    def __enter__(self) -> Candidates:
        return self

    def __exit__(self, *exc) -> None:
        self.stack.close()


def measure_network(
    space: SearchSpace,
    arch: Architecture,
    batches: tuple[int, ...] = (1, 16),
    rounds: int = 30,
    twin: bool = False,
) -> list[dict]:
    """One row per batch size: latencies (ms, median and interval) and speed-ups of every
    way of running ``arch`` (:class:`Candidates`), interleaved."""
    rows = []
    with Candidates(space, arch, twin) as candidates:
        for batch in batches:
            cell = candidates.runners(batch)
            comparison = measure.compare(cell, rounds=rounds, calls=CALLS.get(batch, 1), warmup=5)
            speedups = {
                name: comparison.speedup(a, b).as_dict()
                for name, (a, b) in SPEEDUPS.items()
                if a in cell and b in cell
            }
            rows.append(
                {
                    "batch": batch,
                    "structure": arch.describe(),
                    "architecture": arch.as_dict(),
                    "syncs": sum(arch.syncs),
                    "macs": architecture_cost(space, arch).mults,
                    "flop_bound": parallel_bound(space, arch),
                    "latency_ms": {k: v.as_dict() for k, v in comparison.latencies.items()},
                    "speedup": speedups,
                }
            )
    return rows


def parallel_table(
    best: Architecture,
    widths: dict[str, tuple[int, ...]],
    batches: tuple[int, ...] = (1, 16),
    rounds: int = 30,
    base: SearchSpace | None = None,
    progress: bool = True,
) -> list[dict]:
    """:func:`measure_network` for every width setting (name -> widths) and network of
    :func:`networks`. ``base``: the space whose other fields are kept."""
    base = base or SearchSpace()
    cells = []
    for width_name, w in widths.items():
        space = SearchSpace(**{**asdict(base), "widths": tuple(w)})
        cells += [(width_name, space, name, arch) for name, arch in networks(best, space).items()]
    rows = []
    for width_name, space, name, arch in tqdm(cells, desc="multicore", disable=not progress):
        for row in measure_network(space, arch, batches, rounds, twin=name == "best searched"):
            rows.append(
                {"widths": width_name, "channels": list(space.widths), "network": name, **row}
            )
    return rows


def sync_cost(space: SearchSpace, rounds: int = 30) -> dict:
    """What a sync point costs on this CPU, in the executor's own kernels (batch 1, one
    thread per path): the hand-off (:func:`~course_lib.nas.forked.handoff_cost`), each
    level's merge, each candidate op, and from them the ops' throughput (FLOPs per ms) and
    ``C_sync`` per level in op-FLOP equivalents (:func:`~course_lib.nas.costs.measured_sync_costs`)."""
    handoff = handoff_cost(rounds)
    runners = {}
    for level in range(space.levels):
        size, width = space.out_size(level), space.widths[level]
        xs = [torch.randn(1, width, size, size) for _ in range(space.paths)]
        runners[f"merge {level}"] = _frozen_runner(
            frozen_join(Merge(space.merge, space.paths, width)), xs
        )
        x = torch.randn(
            1, space.in_channels_of(level), space.conv_size(level), space.conv_size(level)
        )
        for op in space.ops:
            runners[f"{op} {level}"] = _frozen_runner(frozen_block(path_block(op, space, level)), x)
    comparison = measure.compare(runners, rounds=rounds, calls=20, warmup=10)
    lat = {name: v.as_dict() for name, v in comparison.latencies.items()}
    flops = op_cost_table(space)[:, 0, :]  # (levels, ops): every path has the same candidates
    op_ms = [
        [lat[f"{op} {level}"]["median_ms"] for op in space.ops] for level in range(space.levels)
    ]
    flops_per_ms = float(flops.sum()) / sum(map(sum, op_ms))
    merge_ms = [lat[f"merge {level}"]["median_ms"] for level in range(space.levels)]
    sync_ms = [handoff["median_ms"] + ms for ms in merge_ms]
    return {
        "handoff_ms": handoff,
        "latency_ms": lat,
        "ops": list(space.ops),
        "op_flops": flops.tolist(),
        "flops_per_ms": flops_per_ms,
        "sync_ms": sync_ms,
        "sync_costs": list(measured_sync_costs(sync_ms, flops_per_ms)),
        "merge_flops": sync_cost_table(space).tolist(),
        "ops_normalizer": float(op_cost_table(space).amax(dim=-1).sum()),
    }


def _frozen_runner(module, x) -> Runner:
    def run() -> None:
        with native_kernels(), torch.inference_mode():
            module(x)

    return Runner(run, f"torch {torch.__version__} TorchScript", 1)


def find(rows: list[dict], widths: str, network: str, batch: int) -> dict | None:
    """The row of ``rows`` for one cell, or ``None``."""
    for row in rows:
        if (row["widths"], row["network"], row["batch"]) == (widths, network, batch):
            return row
    return None
