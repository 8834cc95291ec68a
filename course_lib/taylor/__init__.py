"""Taylor-expansion filter pruning (the course's chapter 3, seed 002; Molchanov et al., 2017).

One concept per module:

- :mod:`.network`: the source network, VGG16's layout at a quarter of its width;
- :mod:`.criterion`: the first-order Taylor criterion with hooks on the feature maps
  (eq. 11-18 of the seed), layer-wise normalization, and the comparison criteria (filter
  L1 norm, mean activation, random);
- :mod:`.loop`: rank, remove a fixed number of filters (torch-pruning's dependency graph),
  fine-tune, repeat until a parameter or MAC budget; resumable;
- :mod:`.transfer`: the offline experiment (8 CIFAR-10 classes -> the 2 held-out ones);
- :mod:`.pretrain`: ``python -m course_lib.taylor.pretrain``, the committed source network;
- :mod:`.compare`: every criterion, every seed, one budget;
- :mod:`.deploy`: ONNX Runtime latency and bytes of unpruned vs pruned;
- :mod:`.imagefolder`: the seed's real experiment (ImageNet VGG16 on your own images);
- :mod:`.settings`, :mod:`.plots`, :mod:`.summary`: the chapter's profiles, figures, tables.
"""

from . import plots, settings, summary
from .compare import Comparison, compare_criteria
from .criterion import CRITERIA, first_order_check, score_filters, taylor_scores
from .deploy import deployment
from .imagefolder import image_folder_loaders, vgg16_transfer
from .loop import Budget, PruneRun, finetune_rounds, prune_iteratively, remove_filters
from .network import SmallVGG16, conv_widths
from .transfer import (
    HELD_OUT,
    SOURCE_CLASSES,
    class_loaders,
    load_source,
    plain_copy,
    source_record,
    transfer_network,
)

__all__ = [
    "CRITERIA",
    "HELD_OUT",
    "SOURCE_CLASSES",
    "Budget",
    "Comparison",
    "PruneRun",
    "SmallVGG16",
    "class_loaders",
    "compare_criteria",
    "conv_widths",
    "deployment",
    "finetune_rounds",
    "first_order_check",
    "image_folder_loaders",
    "load_source",
    "plain_copy",
    "plots",
    "prune_iteratively",
    "remove_filters",
    "score_filters",
    "settings",
    "source_record",
    "summary",
    "taylor_scores",
    "transfer_network",
    "vgg16_transfer",
]
