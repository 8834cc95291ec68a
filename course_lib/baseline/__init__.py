"""Chapter 1, the baseline: what the CNN costs, how well it trains, how fast it runs.

- :mod:`.settings`: the quick and full profiles;
- :mod:`.experiment`: the latency protocol's run, the checkpoint, the metrics dict;
- :mod:`.summary`, :mod:`.plots`: tables and figures of this run and the saved full run.
"""

from .experiment import BATCH_CALLS, NOTEBOOK, latency, metrics, save_checkpoint
from .plots import validation_curve
from .settings import BaselineSettings, baseline_settings
from .summary import (
    TARGETS,
    class_table,
    full_results_table,
    latency_table,
    layer_table,
)

__all__ = [
    "BATCH_CALLS",
    "NOTEBOOK",
    "TARGETS",
    "BaselineSettings",
    "baseline_settings",
    "class_table",
    "full_results_table",
    "latency",
    "latency_table",
    "layer_table",
    "metrics",
    "save_checkpoint",
    "validation_curve",
]
