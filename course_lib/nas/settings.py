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


@dataclass(frozen=True)
class NasSettings:
    """Everything one run of the chapter needs.

    ``space``: the supernet (widths per path). ``search``: the search's optimizers (``beta``
    is set per entry of ``betas``), run on ``search_data``. ``retrain``: the second
    training of every fixed or derived network on ``data``, repeated for each of ``seeds``.
    ``final``: the longer training of the best derived network (chosen on the validation
    split), repeated for each of ``final_seeds``.
    ``lr_check_*``: the paper-vs-ours learning-rate comparison. ``estimate_min``: expected
    minutes per section of the notebook on the course's 2-core CPU.
    """

    data: DataSettings
    search_data: DataSettings
    space: SearchSpace
    search: SearchConfig
    retrain: TrainConfig
    seeds: tuple[int, ...]
    final: TrainConfig
    final_seeds: tuple[int, ...]
    betas: tuple[float, ...]
    lr_check_data: DataSettings
    lr_check_epochs: int
    lr_check_beta: float
    latency_warmup: int
    latency_repeats: int
    estimate_min: dict[str, float]

    def search_for(self, beta: float) -> SearchConfig:
        return replace(self.search, beta=beta)

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


NAS = {
    "quick": NasSettings(
        data=DataSettings(train_per_class=150, val_per_class=50, test_per_class=100),
        search_data=DataSettings(train_per_class=150, val_per_class=50),
        space=SearchSpace(widths=(8, 16, 32, 64)),
        search=search_config(epochs=1),
        retrain=TrainConfig(epochs=2, lr=0.1, label_smoothing=0.1),
        seeds=(0,),
        final=TrainConfig(epochs=2, lr=0.1, label_smoothing=0.1),
        final_seeds=(0,),
        betas=PAPER_BETAS,
        lr_check_data=DataSettings(train_per_class=100, val_per_class=50),
        lr_check_epochs=1,
        lr_check_beta=0.1,
        latency_warmup=5,
        latency_repeats=20,
        estimate_min={"total": 1.2},  # on 2 free cores; a busy machine can triple it
    ),
    "full": NasSettings(
        data=DataSettings(),
        search_data=DataSettings(),
        space=SearchSpace(widths=(24, 48, 96, 192)),
        search=search_config(epochs=2),
        retrain=TrainConfig(epochs=4, lr=0.1, label_smoothing=0.1),
        seeds=(0, 1),
        final=TrainConfig(epochs=15, lr=0.1, label_smoothing=0.1),
        final_seeds=(0,),
        betas=PAPER_BETAS,
        lr_check_data=DataSettings(train_per_class=1000, val_per_class=100),
        lr_check_epochs=2,
        lr_check_beta=0.1,
        latency_warmup=10,
        latency_repeats=100,
        # Estimated from epoch times measured on the course's 2-core CPU (AMD EPYC, bf16
        # autocast; one thread, scaled by 1.8 for two): per epoch of 45,000 images, the
        # supernet ~85 s, a 3x3/5x5 network ~42 s, a 5x5/5x5 network ~53 s; evaluation,
        # ONNX export and latency runs add about 10 s per network.
        estimate_min={
            "learning rates (3 searches x 2 epochs of 10,000 images)": 2.0,
            "experiment 1 (4 networks x 2 seeds x 4 epochs)": 24.0,
            "experiment 2, searches (4 x 2 epochs)": 12.0,
            "experiment 2, retraining (4 networks x 2 seeds x 4 epochs)": 24.0,
            "best network (1 seed x 15 epochs)": 14.0,
            "parallel execution and the rest": 3.0,
            "total": 79.0,
        },
    ),
}


def nas_settings(profile: str) -> NasSettings:
    return NAS[check_profile(profile)]
