"""The comparison of the original paper, on one network and one budget: every criterion
prunes the same transferred network with the same loop, for every seed.

Each seed has its own transferred network (its own head initialization and shuffles;
the 626 training images are the same), and every criterion prunes a copy of it to the
budget. Test accuracy is recorded after every round, right after the removal and
after fine-tuning (reporting only: the loop decides nothing from it). With a ``cache``
folder every finished round is kept, so an interrupted run
resumes where it stopped. The (seed, criterion) runs are independent: they go through
:func:`course_lib.cluster.map_tasks`, a loop here, or Ray tasks when
``$COURSE_RAY_ADDRESS`` is set.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from torch import nn

from ..cluster import map_tasks
from ..data import Loaders
from ..train import accuracy_on_test
from .loop import PruneRun, finetune_rounds, prune_iteratively
from .settings import TaylorSettings
from .transfer import Transferred, plain_copy


@dataclass
class Comparison:
    """The unpruned network of every seed, every (criterion, seed) run, and the pruned
    networks (kept in memory only: ``pruned[criterion][seed]``)."""

    unpruned: dict[int, Transferred]
    runs: dict[str, dict[int, PruneRun]]
    pruned: dict[str, dict[int, nn.Module]]

    def as_dict(self) -> dict:
        """JSON-ready: ``{"unpruned": {seed: scores}, "criteria": {criterion: {seed: run}}}``
        (seeds as strings)."""
        return {
            "unpruned": {str(s): t.as_dict() for s, t in self.unpruned.items()},
            "criteria": {
                c: {str(s): run.as_dict() for s, run in by_seed.items()}
                for c, by_seed in self.runs.items()
            },
        }


def compare_criteria(
    unpruned: dict[int, Transferred],
    loaders: Loaders,
    settings: TaylorSettings,
    cache: str | Path | None = None,
    progress: bool = True,
) -> Comparison:
    """Prune a copy of every seed's transferred network (``unpruned``, from
    :func:`~.transfer.transfer_network`) with each of ``settings.criteria`` to
    ``settings.budget`` (:func:`~.loop.prune_iteratively`), scoring the filters on the
    training images and recording test accuracy after every round."""
    folder = Path(cache) if cache is not None else None
    calibration = list(plain_copy(loaders.train, batch_size=128))
    result = Comparison(
        dict(unpruned), {c: {} for c in settings.criteria}, {c: {} for c in settings.criteria}
    )
    jobs = [(seed, criterion) for seed in unpruned for criterion in settings.criteria]
    task = partial(prune_job, unpruned, calibration, loaders, settings, folder)
    done = map_tasks(task, jobs, desc="pruning runs", progress=progress)
    for (seed, criterion), finished in zip(jobs, done, strict=True):
        result.runs[criterion][seed], result.pruned[criterion][seed] = finished.value
    return result


def prune_job(
    unpruned: dict[int, Transferred],
    calibration: list,
    loaders: Loaders,
    settings: TaylorSettings,
    folder: Path | None,
    job: tuple[int, str],
) -> tuple[PruneRun, nn.Module]:
    """One task of the map: prune a copy of seed ``job[0]``'s network with criterion
    ``job[1]``; returns the run and the pruned network."""
    seed, criterion = job
    model = copy.deepcopy(unpruned[seed].model)
    run = prune_iteratively(
        model,
        criterion,
        calibration,
        finetune_rounds(loaders.train, settings.finetune, seed),
        partial(accuracy_on_test, loaders=loaders),
        settings.budget,
        settings.filters_per_round,
        seed=seed,
        checkpoint=None if folder is None else folder / f"{criterion}_seed{seed}.pt",
        progress=False,
    )
    return run, model
