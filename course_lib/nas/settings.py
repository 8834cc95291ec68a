"""The chapter's two profiles: ``quick`` (every section real, on small subsets, a few
minutes) and ``full`` (the paper's protocol on all of CIFAR-10, within 90 minutes on a
2-core CPU, with fewer seeds and epochs than the paper where the budget demands).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..data import DataSettings
from ..profiles import check_profile
from ..train import TrainConfig
from .search import SearchConfig
from .space import SearchSpace

PAPER_ALPHA = 0.28
PAPER_BETAS = (1.0, 0.1, 0.01, 0.001)
PAPER_WEIGHT_LR = 1e-4  # SGD, the network's weights
PAPER_ARCH_LR = 0.1  # SGD, the decision variables
ARCH_LR = 1.0  # ours: a search of a few hundred steps needs 10x the paper's rate


PAPER_WIDTHS = (8, 16, 32, 64)  # Table 1
COURSE_WIDTHS = (24, 48, 96, 192)  # the full profile's space

DECIDED = 0.6
"""A search's choice counts as a decision only if its winning probability (softmax of the
decision variables at the end of the search) is at least this; below it (0.5 is a coin toss
between two choices) the tables mark it and no comparison counts it as a difference."""

SPEEDUP_MIN = 1.05
"""The smallest gain (5 %) that the summaries call faster or slower, and then only where
the latencies' 95 % intervals are apart."""


@dataclass(frozen=True)
class NasSettings:
    """Everything one run of the chapter needs.

    ``space``: the supernet (widths per path). ``search``: the search's optimizers (``beta``
    is set per entry of ``betas``), run on ``search_data`` once per ``search_seeds``.
    ``retrain``: the second training of every fixed network (experiment 1, from scratch,
    once per ``seeds``) and of every derived one (from its search's weights, and from
    scratch for comparison), on ``data``. ``final``: the longer warm-started training of
    the network to deploy (:func:`course_lib.nas.summary.deploy_choice`: within
    ``deploy_macs``, the cheapest of those within noise of the best validation accuracy).
    ``lr_check_*``: the paper-vs-ours learning-rate comparison. ``latency_rounds``: rounds
    of :func:`course_lib.measure.compare` per network. ``deploy_macs``: the budget (MACs per
    image) of the network the chapter deploys. ``multicore_*``: the widths, batch sizes and
    rounds of the path-parallelism measurements. ``estimate_min``: expected
    minutes per section of the notebook on the course's 2-core CPU.
    """

    data: DataSettings
    search_data: DataSettings
    space: SearchSpace
    search: SearchConfig
    retrain: TrainConfig
    seeds: tuple[int, ...]
    search_seeds: tuple[int, ...]
    final: TrainConfig
    betas: tuple[float, ...]
    lr_check_data: DataSettings
    lr_check_epochs: int
    lr_check_beta: float
    latency_rounds: int
    deploy_macs: int
    multicore_widths: dict[str, tuple[int, ...]]
    multicore_batches: tuple[int, ...]
    multicore_rounds: int
    estimate_min: dict[str, float]

    def search_for(self, beta: float, sync_costs: tuple[float, ...] | None = None):
        return replace(self.search, beta=beta, sync_costs=sync_costs)

    def paper_search(self) -> SearchConfig:
        """The paper's optimizers: plain SGD, 1e-4 for the weights, 0.1 for the decisions
        (the other fields as in ``search``)."""
        weights = replace(
            self.search.weights,
            lr=PAPER_WEIGHT_LR,
            momentum=0.0,
            weight_decay=0.0,
            schedule="constant",
        )
        return replace(self.search, weights=weights, arch_lr=PAPER_ARCH_LR, arch_momentum=0.0)


def search_config(epochs: int) -> SearchConfig:
    """The chapter's search optimizers for ``epochs`` epochs (joint updates, alpha 0.28)."""
    # The weights see alpha * CE, so their learning rate is divided by alpha: alpha then
    # only sets the balance against the cost term, not the step size.
    weights = TrainConfig(
        epochs=epochs, lr=0.1 / PAPER_ALPHA, schedule="cosine", label_smoothing=0.0
    )
    return SearchConfig(weights=weights, arch_lr=ARCH_LR, alpha=PAPER_ALPHA, scheme="joint")


MULTICORE_WIDTHS = {"paper": PAPER_WIDTHS, "course": COURSE_WIDTHS}

NAS = {
    "quick": NasSettings(
        data=DataSettings(train_per_class=150, val_per_class=50, test_per_class=100),
        search_data=DataSettings(train_per_class=150, val_per_class=50),
        space=SearchSpace(widths=PAPER_WIDTHS),
        search=search_config(epochs=1),
        retrain=TrainConfig(epochs=1, lr=0.1, label_smoothing=0.1),
        seeds=(0,),
        search_seeds=(0, 1),
        final=TrainConfig(epochs=1, lr=0.1, label_smoothing=0.1),
        betas=PAPER_BETAS,
        lr_check_data=DataSettings(train_per_class=100, val_per_class=50),
        lr_check_epochs=1,
        lr_check_beta=0.1,
        latency_rounds=3,
        deploy_macs=3_200_000,  # half the largest network's 6.4 M MACs, as in the full profile
        multicore_widths={"paper": PAPER_WIDTHS},
        multicore_batches=(1, 16),
        multicore_rounds=3,
        # 23 min (7 min of CPU time) on the course's 2 cores shared with about six other jobs;
        # about 4 min on 2 free cores, estimated from that CPU time.
        estimate_min={"total": 4.0},
    ),
    "full": NasSettings(
        data=DataSettings(),
        search_data=DataSettings(),
        space=SearchSpace(widths=COURSE_WIDTHS),
        search=search_config(epochs=2),
        retrain=TrainConfig(epochs=3, lr=0.1, label_smoothing=0.1),
        seeds=(0, 1),
        search_seeds=(0, 1),
        final=TrainConfig(epochs=15, lr=0.1, label_smoothing=0.1),
        betas=PAPER_BETAS,
        lr_check_data=DataSettings(train_per_class=1000, val_per_class=100),
        lr_check_epochs=2,
        lr_check_beta=0.1,
        latency_rounds=30,
        # Half the MACs of the space's largest network (every op 5x5, every sync point:
        # 50.0 M at the course's widths): a budget for a small embedded CPU.
        deploy_macs=25_000_000,
        multicore_widths=MULTICORE_WIDTHS,
        multicore_batches=(1, 16),
        multicore_rounds=20,
        # Measured: the full run of commit dbe3b89 on the idle 2-core Intel Xeon (AMX,
        # bf16 autocast) took 79.9 min; each value is its section's time, rounded up. The
        # keys are the sections of ChapterRun (course_lib.nas.experiments).
        estimate_min={
            "learning rates": 2.0,  # 3 searches x 2 epochs of 10,000 images
            "experiment 1": 14.5,  # 4 networks x 2 seeds x 3 epochs, from scratch
            "experiment 2, searches": 21.5,  # 4 betas x 2 seeds x 2 epochs
            "measured sync cost": 11.5,  # the cost itself, and its 4 searches of 2 epochs
            "experiment 2, retraining": 21.0,  # 8 warm starts + 4 from scratch, 3 epochs
            "best network": 10.0,  # warm start, 15 epochs
            "multicore": 1.0,  # 2 widths x 5 networks x 2 batch sizes
        },
    ),
}


def nas_settings(profile: str) -> NasSettings:
    return NAS[check_profile(profile)]
