"""Run a derived network's paths concurrently, one path per core, with ONNX Runtime
sessions driven from Python threads.

The network is cut at its kept sync points into *stages*. In every stage each path is one
small ONNX model (its blocks since the last sync point) run by its own single-threaded
ONNX Runtime session, and the stage ends with a *join*: the merge of the sync point, or
the head (concatenate the pooled paths, FC, FC). :class:`PathExecutor` runs the paths of
a stage on ``paths`` threads at once (the caller's thread takes path 0, a persistent
worker thread pinned to its own core each of the others; ONNX Runtime releases the GIL
while it computes) and meets them only at the join. With ``parallel=False`` the same sessions run one after
another on one thread: the sequential baseline, identical kernels, identical outputs.

Every stage costs Python work: queue hand-offs to the worker and one session call per
path and per join, each some microseconds. :mod:`course_lib.nas.forked` runs the same
stages without Python in the loop. ONNX Runtime's own parallel executor on the whole
graph is ``measure.onnx_runner(path, parallel=True, threads=paths)``.
:func:`executor_runner` wraps an executor for :func:`course_lib.measure.compare`, the
course's one timing protocol.
"""

from __future__ import annotations

import os
import queue
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..measure import Runner, deployable_copy, example_input, onnx_session
from .costs import architecture_cost
from .network import Merge, ParallelNet
from .space import Architecture, SearchSpace


class _Join(nn.Module):
    """A merge or the head's classifier, taking the paths' outputs as separate inputs."""

    def __init__(self, merge: Merge | None = None, classifier: nn.Module | None = None):
        super().__init__()
        self.merge, self.classifier = merge, classifier

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        if self.merge is not None:
            return self.merge(list(xs))
        return self.classifier(torch.cat(xs, dim=1))


@dataclass
class Stage:
    """The paths' modules from one kept sync point (or the input) to the next join: the
    sync point's ``merge``, or, in the last stage, the head's ``classifier`` over the
    concatenated paths. Every path of a stage takes the same input."""

    paths: list[nn.Module]
    merge: Merge | None = None
    classifier: nn.Module | None = None

    @property
    def join(self) -> nn.Module:
        """The join as one module taking the paths' outputs as separate inputs."""
        return _Join(self.merge, self.classifier)


def stages(net: ParallelNet) -> list[Stage]:
    """Cut ``net`` at its kept sync points; the last stage's paths end with the pooling."""
    space, result = net.space, []
    current: list[list[nn.Module]] = [[] for _ in range(space.paths)]
    for level in range(space.levels):
        for path in range(space.paths):
            current[path].append(net.blocks[level][path])
        if str(level) in net.merges:
            result.append(Stage([nn.Sequential(*m) for m in current], merge=net.merges[str(level)]))
            current = [[] for _ in range(space.paths)]
    paths = [nn.Sequential(*m, net.head.pool) for m in current]
    result.append(Stage(paths, classifier=net.head.classifier))
    return result


def _export(module: nn.Module, inputs: list[torch.Tensor], path: Path) -> Path:
    names = [f"x{i}" for i in range(len(inputs))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            module.eval(),
            tuple(inputs),
            str(path),
            input_names=names,
            output_names=["y"],
            dynamic_axes={name: {0: "batch"} for name in [*names, "y"]},
            dynamo=False,
        )
    return path


class _Worker(threading.Thread):
    """A persistent thread, optionally pinned to one core, that runs one path per request."""

    def __init__(self, core: int | None) -> None:
        super().__init__(daemon=True)
        self.core, self.inbox, self.outbox = core, queue.SimpleQueue(), queue.SimpleQueue()
        self.start()

    def run(self) -> None:
        if self.core is not None and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {self.core % (os.cpu_count() or 1)})  # this thread only
        while (job := self.inbox.get()) is not None:
            self.outbox.put(_run_or_error(*job))


class PathExecutor:
    """Runs a :class:`ParallelNet` stage by stage, its paths concurrently when ``parallel``.

    Call it with a float32 NCHW array; it returns the logits. Use as a context manager (or
    call :meth:`close`) to stop the worker threads. ``pin`` pins worker ``i`` (path ``i``)
    to core ``i``; the caller's thread runs path 0 wherever the OS puts it.
    """

    def __init__(
        self,
        net: ParallelNet,
        parallel: bool = True,
        pin: bool = True,
        folder: str | Path | None = None,
    ) -> None:
        net = deployable_copy(net)
        self.parallel, self.paths = parallel, net.space.paths
        self._tmp = None if folder else tempfile.TemporaryDirectory()
        folder = Path(folder or self._tmp.name)
        folder.mkdir(parents=True, exist_ok=True)
        x = torch.zeros(1, net.space.in_channels, net.space.image_size, net.space.image_size)
        self.stages: list[tuple[list, object]] = []
        inputs = [x] * self.paths
        with torch.no_grad():
            for i, stage in enumerate(stages(net)):
                sessions = [
                    onnx_session(_export(module, [h], folder / f"s{i}_p{p}.onnx"))
                    for p, (module, h) in enumerate(zip(stage.paths, inputs, strict=True))
                ]
                outs = [module(h) for module, h in zip(stage.paths, inputs, strict=True)]
                join_module = stage.join
                join = onnx_session(_export(join_module, outs, folder / f"s{i}_join.onnx"))
                self.stages.append((sessions, join))
                inputs = [join_module(*outs)] * self.paths
        count = self.paths - 1 if parallel else 0
        self._workers = [_Worker(p if pin else None) for p in range(1, count + 1)]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        inputs = [np.ascontiguousarray(x, dtype=np.float32)] * self.paths
        for sessions, join in self.stages:
            for worker, session, h in zip(self._workers, sessions[1:], inputs[1:], strict=False):
                worker.inbox.put((session, h))
            outs = [_run_or_error(sessions[0], inputs[0])]
            outs += [w.outbox.get() for w in self._workers]  # always collect, even after an error
            rest = slice(len(outs), None)  # sequential mode: every path but the first
            outs += [_run(s, h) for s, h in zip(sessions[rest], inputs[rest], strict=True)]
            for out in outs:
                if isinstance(out, Exception):
                    raise out
            merged = join.run(None, {f"x{i}": o for i, o in enumerate(outs)})[0]
            inputs = [merged] * self.paths
        return merged

    def close(self) -> None:
        for worker in self._workers:
            worker.inbox.put(None)
            worker.join()
        self._workers = []
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> PathExecutor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _run(session, x: np.ndarray) -> np.ndarray:
    return session.run(None, {"x0": x})[0]


def _run_or_error(session, x: np.ndarray) -> np.ndarray | Exception:
    try:
        return _run(session, x)
    except Exception as error:  # raised by the caller's thread once every path is back
        return error


def executor_runner(executor: PathExecutor, batch_size: int = 1) -> Runner:
    """A :class:`course_lib.measure.Runner` of ``executor`` on a fixed input batch."""
    x = example_input(batch_size).numpy()
    import onnxruntime as ort

    mode = "paths in parallel" if executor.parallel else "paths in sequence"
    threads = executor.paths if executor.parallel else 1
    runtime = f"onnxruntime {ort.__version__} sessions, Python threads, {mode}"
    return Runner(lambda: executor(x), runtime, batch_size, threads)


def single_path_twin(space: SearchSpace, arch: Architecture, op: str = "conv3x3"):
    """A one-path network of ``op`` blocks whose widths are scaled so that its MACs come
    closest to ``arch``'s. Returns ``(space, arch)`` of the twin."""
    target = architecture_cost(space, arch).mults

    def twin(scale: float) -> tuple[SearchSpace, Architecture]:
        widths = tuple(max(1, round(w * scale)) for w in space.widths)
        one = SearchSpace(
            paths=1,
            widths=widths,
            ops=(op,),
            merge=space.merge,
            pool_after=space.pool_after,
            hidden=space.hidden,
            num_classes=space.num_classes,
            in_channels=space.in_channels,
            image_size=space.image_size,
        )
        return one, Architecture.uniform(one, (op,))

    low, high = 0.1, 10.0
    for _ in range(60):
        mid = (low * high) ** 0.5
        if architecture_cost(*twin(mid)).mults < target:
            low = mid
        else:
            high = mid
    return min((twin(low), twin(high)), key=lambda t: abs(architecture_cost(*t).mults - target))
