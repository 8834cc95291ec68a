"""Do this machine's cores run two paths at once? Every way of using them, side by side.

The NAS chapter's claim is that P parallel paths, one per core, run up to P times faster
than the same paths one after another. This script times, interleaved and with 95 %
intervals (:mod:`course_lib.measure`), 2-path networks of the chapter's space at the
paper's widths (8/16/32/64) and at the course's (24/48/96/192), at batch 1 and 16:

- the paths forked one per core in TorchScript (:class:`course_lib.nas.ForkExecutor`)
  against the same frozen kernels run in sequence;
- the paths as ONNX Runtime sessions on Python threads (:class:`course_lib.nas.PathExecutor`),
  in parallel and in sequence;
- ONNX Runtime on the whole graph: one thread, two intra-op threads, ``ORT_PARALLEL``;

and what one fork + wait costs (the hand-off that every kept sync point pays). Networks:
the chapter's best searched structure (``--best``, default the saved full run's), with and
without its sync points, balanced (conv 5x5 on both paths) with no or all sync points, and
conv 3x3 beside conv 5x5. Weights are random: latency does not depend on them.

    python benchmarks/bench_parallel_paths.py [--rounds 30] [--widths paper course] [--batches 1 16]
                                              [--json out.json]

Run it on a quiet machine: on shared cores the intervals grow and the ratios drift.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from course_lib import results
from course_lib.formatting import latency_text
from course_lib.nas import Architecture, multicore, summary
from course_lib.nas.forked import handoff_cost
from course_lib.nas.settings import MULTICORE_WIDTHS


def saved_best() -> Architecture:
    """The best searched network of the saved full run (all-5x5 with every sync point
    when there is none)."""
    record = results.load_results("nas")
    if record is None:
        return Architecture.of([["conv5x5", "conv5x5"]] * 4, [True] * 4)
    arch = record["metrics"]["best_network"]["architecture"]
    return Architecture.of(arch["ops"], arch["syncs"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30, help="interleaved rounds per cell")
    parser.add_argument(
        "--widths", nargs="+", default=list(MULTICORE_WIDTHS), choices=list(MULTICORE_WIDTHS)
    )
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 16])
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    args = parser.parse_args()
    if args.rounds < 2:
        parser.error("--rounds must be at least 2")
    best = saved_best()
    print(f"best searched network: {'; '.join(best.describe())}")
    handoff = handoff_cost(args.rounds)
    print(f"one fork + wait: {latency_text(handoff)}")
    widths = {name: MULTICORE_WIDTHS[name] for name in args.widths}
    rows = multicore.parallel_table(best, widths, tuple(args.batches), args.rounds)
    m = {"profile": "benchmark", "parallel_table": rows}
    for name in widths:
        print(summary.parallel_table(m, name).data, end="\n\n")
    print(summary.multicore_text(m).data)
    if args.json:
        args.json.write_text(json.dumps({"handoff_ms": handoff, "rows": rows}, indent=1))
        print(f"rows written to {args.json}")


if __name__ == "__main__":
    main()
