"""Path parallelism without Python in the loop: TorchScript ``fork`` / ``wait``.

:class:`~course_lib.nas.parallel.PathExecutor` hands every stage to a worker thread through
Python queues and runs every path and every join as a separate ONNX Runtime call from
Python. Here the whole derived network is one frozen TorchScript module. At every stage
(:func:`course_lib.nas.parallel.stages`) the interpreter submits paths ``1 .. P-1`` to
PyTorch's inter-op thread pool (``torch.jit.fork``), runs path 0 on the caller's thread,
waits for the others (``torch.jit.wait``) and joins them, all in C++.

What is left of the hand-off: per stage and forked path, one task submission and one
wake-up of a pool thread through a condition variable (the pool does not spin), measured
by :func:`handoff_cost`; and the join (merge or head), which runs on one thread while the
other waits. With ``parallel=False`` the same frozen module runs the paths one after the
other on the caller's thread: the sequential baseline, identical kernels.

Threads. Every path runs single-threaded: :func:`course_lib.measure.compare` sets one
intra-op thread on the caller, and the executor starts the pool while one thread is set,
so that the pool's threads take that count too (they read it once, when they start).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..measure import Runner, compare, deployable_copy, example_input
from .network import ParallelNet
from .parallel import Stage, stages


class _Join(nn.Module):
    """A stage's join in TorchScript: ``module(cat(xs))`` (1x1 merge conv or the head's FC
    layers), or the element-wise sum of the paths (the ``"sum"`` merge, eq. 4)."""

    def __init__(self, module: nn.Module | None) -> None:
        super().__init__()
        self.concat = module is not None
        self.module = module if module is not None else nn.Identity()

    def forward(self, xs: list[Tensor]) -> Tensor:
        if self.concat:
            return self.module(torch.cat(xs, dim=1))
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


class _Stage(nn.Module):
    """Every path of a stage on the same input, then the join."""

    def __init__(self, stage: Stage, parallel: bool) -> None:
        super().__init__()
        self.first = stage.paths[0]
        self.others = nn.ModuleList(stage.paths[1:])
        if stage.classifier is not None:
            self.join = _Join(stage.classifier)
        else:
            self.join = _Join(stage.merge.conv)  # None for the "sum" merge
        self.parallel = parallel

    def forward(self, x: Tensor) -> Tensor:
        outs: list[Tensor] = []
        if self.parallel:
            futures: list[torch.jit.Future[Tensor]] = []
            for path in self.others:
                futures.append(torch.jit.fork(path, x))
            outs.append(self.first(x))
            for future in futures:
                outs.append(torch.jit.wait(future))
        else:
            outs.append(self.first(x))
            for path in self.others:
                outs.append(path(x))
        return self.join(outs)


class _Stages(nn.Module):
    def __init__(self, parts: list[_Stage]) -> None:
        super().__init__()
        self.parts = nn.ModuleList(parts)

    def forward(self, x: Tensor) -> Tensor:
        for part in self.parts:
            x = part(x)
        return x


@contextlib.contextmanager
def native_kernels(onednn: bool = False) -> Iterator[None]:
    """PyTorch's oneDNN convolutions on or off inside the block (a global switch, restored
    after it). At batch 1 on the chapter's small maps, each oneDNN call costs tens of
    microseconds more than PyTorch's native im2col + GEMM kernels."""
    previous = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = onednn
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = previous


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """Fold every BatchNorm that directly follows a conv in a ``Sequential`` into that conv
    (eval mode), in place; returns ``module``. Done before scripting, so that the forked
    and the sequential module run the same kernels (``torch.jit.freeze`` does not fold
    inside forked subgraphs)."""
    for child in module.modules():
        if not isinstance(child, nn.Sequential):
            continue
        for i in range(len(child) - 1):
            conv, bn = child[i], child[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                child[i] = fuse_conv_bn_eval(conv.eval(), bn.eval())
                child[i + 1] = nn.Identity()
    return module


def freeze(module: nn.Module) -> torch.jit.ScriptModule:
    """``torch.jit.freeze(torch.jit.script(module))`` in eval mode, without TorchScript's
    deprecation warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.freeze(torch.jit.script(module.eval()))


class ForkExecutor:
    """A :class:`ParallelNet` as one frozen TorchScript module, its paths forked onto the
    inter-op pool at every stage (``parallel``) or run one after another.

    Call it with a float32 NCHW tensor (or array); it returns the logits as a tensor. The
    caller's network is not changed. ``onednn``: let PyTorch use its oneDNN convolutions
    (off by default, see :func:`native_kernels`).
    """

    def __init__(self, net: ParallelNet, parallel: bool = True, onednn: bool = False) -> None:
        net = fold_batchnorm(deployable_copy(net))
        self.paths, self.parallel, self.onednn = net.space.paths, parallel, onednn
        self.stages = len(stages(net))
        self.module = freeze(_Stages([_Stage(stage, parallel) for stage in stages(net)]))
        self.image = (net.space.in_channels, net.space.image_size, net.space.image_size)
        _start_pool(lambda: self(torch.zeros(1, *self.image)))

    def __call__(self, x: Tensor | np.ndarray) -> Tensor:
        x = torch.as_tensor(x, dtype=torch.float32)
        # Checked here: an error raised inside the module while a forked path is still
        # running would take the process down instead of raising.
        if x.dim() != 4 or tuple(x.shape[1:]) != self.image:
            raise ValueError(
                f"expected images of shape (N, {', '.join(map(str, self.image))}), got {tuple(x.shape)}"
            )
        with native_kernels(self.onednn), torch.inference_mode():
            return self.module(x)


def frozen_join(merge) -> torch.jit.ScriptModule:
    """A sync point's merge (:class:`~course_lib.nas.network.Merge`) as the executor runs
    it: one frozen module taking the list of the paths' outputs."""
    return freeze(fold_batchnorm(_Join(deployable_copy(merge).conv)))


def frozen_block(module: nn.Module) -> torch.jit.ScriptModule:
    """One block (op + BN + ReLU [+ pool]) as the executor runs it."""
    return freeze(fold_batchnorm(deployable_copy(module)))


def _start_pool(call) -> None:
    """Run ``call`` once on one intra-op thread: the first fork starts the pool's threads,
    which keep the intra-op thread count current when they start."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        call()
    finally:
        torch.set_num_threads(previous)


def fork_runner(executor: ForkExecutor, batch_size: int = 1) -> Runner:
    """A :class:`course_lib.measure.Runner` of ``executor`` on a fixed input batch."""
    x = example_input(batch_size)
    mode = "paths forked" if executor.parallel else "paths in sequence"
    threads = executor.paths if executor.parallel else 1
    runtime = f"torch {torch.__version__} TorchScript, {mode}"
    return Runner(lambda: executor(x), runtime, batch_size, threads)


# --- what a hand-off costs -------------------------------------------------------------------


class _Tiny(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x + 1


class _TwoTiny(nn.Module):
    """Two tiny tasks, forked (one on the pool, one here) or one after the other."""

    def __init__(self, forked: bool) -> None:
        super().__init__()
        self.a, self.b, self.forked = _Tiny(), _Tiny(), forked

    def forward(self, x: Tensor) -> Tensor:
        if self.forked:
            future = torch.jit.fork(self.b, x)
            return self.a(x) + torch.jit.wait(future)
        return self.a(x) + self.b(x)


def paired_difference(
    round_ms: dict[str, list[float]], candidate: str, baseline: str, resamples: int = 2000
) -> dict:
    """Median over rounds of ``candidate - baseline`` (milliseconds per call, rounds paired
    as :func:`course_lib.measure.compare` interleaves them) and its 95 % bootstrap interval:
    ``{"median_ms", "low_ms", "high_ms"}``."""
    diff = np.asarray(round_ms[candidate]) - np.asarray(round_ms[baseline])
    picks = np.random.default_rng(0).integers(0, len(diff), size=(resamples, len(diff)))
    low, high = np.percentile(np.median(diff[picks], axis=1), [2.5, 97.5])
    return {"median_ms": float(np.median(diff)), "low_ms": float(low), "high_ms": float(high)}


def handoff_cost(rounds: int = 30, calls: int = 200) -> dict:
    """What one fork + wait costs beyond the work itself, in milliseconds: two tiny tasks
    forked vs run inline (interleaved, :func:`course_lib.measure.compare`), the paired
    difference of their times with its interval."""
    x = torch.zeros(8)
    runners = {}
    for name, forked in (("forked", True), ("inline", False)):
        module = freeze(_TwoTiny(forked))
        _start_pool(lambda module=module: module(x))
        runners[name] = Runner(lambda module=module: module(x), "torch TorchScript", 1)
    comparison = compare(runners, rounds=rounds, calls=calls, warmup=calls)
    return paired_difference(comparison.round_ms, "forked", "inline")
