"""Pruning: make the baseline CNN smaller by removing weights or whole channels.

- :mod:`.unstructured`: magnitude (L1) pruning of single weights with
  ``torch.nn.utils.prune``, layer-wise or global, one-shot or iterative, exact sparsity.
- :mod:`.storage`: what those zeros save on disk (dense vs bitmask / CSR encodings, bytes).
- :mod:`.structured`: channel pruning with torch-pruning (dependency graph, importances,
  pruners, sparsity training, aligned widths), done gradually.
- :mod:`.benchmark`: measured CPU latency (PyTorch and ONNX Runtime, ms) and speed-ups,
  every model timed interleaved with the one it is compared against.
- :mod:`.experiment`, :mod:`.selection`: the chapter's experiments, one function per section.
- :mod:`.settings`: the chapter's ``quick`` and ``full`` profiles.
- :mod:`.plots`, :mod:`.summary`: the chapter's figures and tables, drawn from its metrics.
"""

from . import (
    benchmark,
    experiment,
    plots,
    selection,
    settings,
    storage,
    structured,
    summary,
    unstructured,
)
from .structured import (
    IMPORTANCES,
    PRUNERS,
    ChannelStep,
    make_pruner,
    prune_channels_gradually,
    sparsity_regularization,
)
from .unstructured import (
    check_ratio,
    global_sparsity,
    layer_sparsity,
    make_permanent,
    prune_iteratively,
    prune_to,
)

__all__ = [
    "IMPORTANCES",
    "PRUNERS",
    "ChannelStep",
    "benchmark",
    "check_ratio",
    "experiment",
    "global_sparsity",
    "layer_sparsity",
    "make_permanent",
    "make_pruner",
    "plots",
    "prune_channels_gradually",
    "prune_iteratively",
    "prune_to",
    "selection",
    "settings",
    "sparsity_regularization",
    "storage",
    "structured",
    "summary",
    "unstructured",
]
