"""Do this machine's cores run two paths at once? Path-parallel vs sequential, side by side.

The NAS chapter's claim is that P parallel paths, one per core, run up to P times faster
than the same paths one after another. :class:`course_lib.nas.PathExecutor` runs 2-path
networks of the chapter's full-profile space (no sync point, random weights) both ways in
one run, at batch 1 (the chapter's target) and at batch 16 (more work per thread hand-off).
Balanced paths (conv 5x5 on both) can gain up to 2x: near 2x at batch 16 shows that the two
cores really compute in parallel. Conv 3x3 beside conv 5x5 gains at most about
(9 + 25) / 25 = 1.36x, because the parallel run waits for the slower path.

    python benchmarks/bench_parallel_paths.py [--repeats 100]

Prints medians in milliseconds and the speed-ups (sequential / parallel).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from course_lib.nas import Architecture, ParallelNet, PathExecutor, SearchSpace
from course_lib.nas.parallel import latency


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=100)
    args = parser.parse_args()
    space = SearchSpace(widths=(24, 48, 96, 192))
    for ops in (("conv5x5", "conv5x5"), ("conv3x3", "conv5x5")):
        torch.manual_seed(0)
        net = ParallelNet(space, Architecture.uniform(space, ops)).eval()
        with PathExecutor(net) as parallel, PathExecutor(net, parallel=False) as sequential:
            for batch in (1, 16):
                x = np.random.default_rng(0).standard_normal((batch, 3, 32, 32), dtype=np.float32)
                repeats = args.repeats if batch == 1 else max(args.repeats // 4, 5)
                seq = latency(sequential, x, 10, repeats).median_ms
                par = latency(parallel, x, 10, repeats, threads=2).median_ms
                print(
                    f"executor, {' / '.join(ops)}, batch {batch:>2}: sequential {seq:.3f} ms, "
                    f"path-parallel {par:.3f} ms: {seq / par:.2f}x"
                )


if __name__ == "__main__":
    main()
