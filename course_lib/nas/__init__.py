"""Resource-aware differentiable NAS for multicore CPUs (the course's chapter 4, seed 001).

One concept per module:

- :mod:`.space`: candidate ops, :class:`SearchSpace` (the paper's Table 1) and
  :class:`Architecture` (one network in it);
- :mod:`.supernet`: mixed ops (eq. 1-2), soft sync points (eq. 3-4), :class:`SuperNet`;
- :mod:`.network`: the derived, standalone :class:`ParallelNet`;
- :mod:`.costs`: multiplications and additions (eq. 7-10) and the cost loss (eq. 6, 11, 12),
  with ``C_sync`` priced in FLOPs or by a measured time;
- :mod:`.search`: the search loop, two optimizers (joint or alternating updates);
- :mod:`.derive`: argmax decisions -> architecture -> network with the search's weights;
- :mod:`.evaluate`: the second training (warm start or from scratch) over seeds, accuracy,
  MACs, latency (with a cache, so that an interrupted full run resumes);
- :mod:`.parallel`: the paths as ONNX Runtime sessions on Python threads;
- :mod:`.forked`: the paths forked in TorchScript, no Python between stages;
- :mod:`.multicore`: every way of using the cores, side by side; what a sync costs;
- :mod:`.experiments`, :mod:`.summary`, :mod:`.plots`: the chapter's sections, tables
  and figures; :mod:`.settings`: its quick and full profiles.
"""

from . import plots, summary
from .costs import (
    OpCost,
    architecture_cost,
    conv_adds,
    conv_mults,
    cost_tables,
    fc_adds,
    fc_mults,
    measured_sync_costs,
    op_cost,
    op_cost_table,
    ops_loss,
    sync_cost_table,
    sync_loss,
    total_loss,
)
from .derive import SearchResult, decide, derive, extract_network, fix_decisions, search_and_derive
from .evaluate import Assessment, assess, latencies, load_or_compute, retrain
from .experiments import ChapterRun
from .forked import ForkExecutor, fork_runner, handoff_cost
from .network import Head, Merge, ParallelNet
from .parallel import PathExecutor, executor_runner, single_path_twin, stages
from .search import SearchConfig, SearchHistory, search
from .settings import nas_settings
from .space import OPS, Architecture, SearchSpace, make_op
from .supernet import MixedOp, SuperNet, SyncPoint

__all__ = [
    "OPS",
    "Architecture",
    "Assessment",
    "ChapterRun",
    "ForkExecutor",
    "Head",
    "Merge",
    "MixedOp",
    "OpCost",
    "ParallelNet",
    "PathExecutor",
    "SearchConfig",
    "SearchHistory",
    "SearchResult",
    "SearchSpace",
    "SuperNet",
    "SyncPoint",
    "architecture_cost",
    "assess",
    "load_or_compute",
    "conv_adds",
    "conv_mults",
    "cost_tables",
    "decide",
    "derive",
    "executor_runner",
    "extract_network",
    "fc_adds",
    "fc_mults",
    "fix_decisions",
    "fork_runner",
    "handoff_cost",
    "latencies",
    "make_op",
    "measured_sync_costs",
    "nas_settings",
    "op_cost",
    "op_cost_table",
    "ops_loss",
    "plots",
    "retrain",
    "search",
    "search_and_derive",
    "single_path_twin",
    "stages",
    "summary",
    "sync_cost_table",
    "sync_loss",
    "total_loss",
]
