"""Resource-aware differentiable NAS for multicore CPUs (the course's chapter 4, seed 001).

One concept per module:

- :mod:`.space`: candidate ops, :class:`SearchSpace` (the paper's Table 1) and
  :class:`Architecture` (one network in it);
- :mod:`.supernet`: mixed ops (eq. 1-2), soft sync points (eq. 3-4), :class:`SuperNet`;
- :mod:`.network`: the derived, standalone :class:`ParallelNet`;
- :mod:`.costs`: multiplications and additions (eq. 7-10) and the cost loss (eq. 6, 11, 12);
- :mod:`.search`: the search loop, two optimizers (joint or alternating updates);
- :mod:`.derive`: argmax decisions -> architecture -> network (and search-then-derive);
- :mod:`.parallel`: run the paths concurrently, one per core (ONNX Runtime);
- :mod:`.evaluate`: retrain an architecture over seeds, measure accuracy, MACs, latency
  (with a JSON cache, so that an interrupted full run resumes);
- :mod:`.settings`: the chapter's quick and full profiles.
"""

from .costs import (
    OpCost,
    architecture_cost,
    conv_adds,
    conv_mults,
    fc_adds,
    fc_mults,
    op_cost,
    op_cost_table,
    ops_loss,
    sync_cost_table,
    sync_loss,
    total_loss,
)
from .derive import decide, derive, extract, fix, search_and_derive
from .evaluate import Assessment, assess, cached, latencies, retrain
from .network import Head, Merge, ParallelNet
from .parallel import PathExecutor, executor_runner, ort_parallel_session, single_path_twin, stages
from .search import SearchConfig, SearchHistory, search
from .space import OPS, Architecture, SearchSpace, make_op
from .supernet import MixedOp, SuperNet, SyncPoint

__all__ = [
    "OPS",
    "Architecture",
    "Assessment",
    "Head",
    "Merge",
    "MixedOp",
    "OpCost",
    "ParallelNet",
    "PathExecutor",
    "SearchConfig",
    "SearchHistory",
    "SearchSpace",
    "SuperNet",
    "SyncPoint",
    "architecture_cost",
    "assess",
    "cached",
    "decide",
    "conv_adds",
    "conv_mults",
    "derive",
    "extract",
    "fc_adds",
    "fc_mults",
    "fix",
    "latencies",
    "executor_runner",
    "make_op",
    "op_cost",
    "op_cost_table",
    "ops_loss",
    "ort_parallel_session",
    "retrain",
    "search",
    "search_and_derive",
    "single_path_twin",
    "stages",
    "sync_cost_table",
    "sync_loss",
    "total_loss",
]
