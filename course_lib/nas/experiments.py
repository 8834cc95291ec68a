"""The chapter's experiments, one method per section of ``notebooks/04_nas.ipynb``.

:class:`ChapterRun` holds the settings, the data and what the sections found so far. Every
method runs one section (seeded; in a full run every search and training is cached under
``runs/full/nas_cache/``, so that an interrupted run resumes) and stores its numbers in
``run.metrics``: the dict that ``results/nas.json`` saves and that :mod:`.summary` and
:mod:`.plots` draw, for this run and for the saved full run alike.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, replace
from functools import cached_property, partial
from pathlib import Path

from tqdm.auto import tqdm

from .. import chapter, data, train
from ..cluster import map_tasks
from .costs import architecture_cost
from .derive import SearchResult, search_and_derive
from .evaluate import assess, load_or_compute
from .multicore import parallel_table, sync_cost
from .search import search
from .settings import PAPER_ARCH_LR, NasSettings, nas_settings
from .space import Architecture
from .summary import deploy_choice, headline, margin
from .supernet import SuperNet

NOTEBOOK = "notebooks/04_nas.ipynb"

#: Experiment 1 (the paper's Fig. 7): which sync points are kept, 3x3 on one path, 5x5 on
#: the other.
SYNC_CONFIGS = {
    "none": (False, False, False, False),
    "all": (True, True, True, True),
    "first two": (True, True, False, False),
    "last two": (False, False, True, True),
}


def agreement(archs: list[Architecture]) -> dict:
    """Do searches with different seeds derive the same network? ``same``: all equal;
    ``differing``: how many of the decisions (one op per block, one per sync point)
    differ from the first search's; ``decisions``: how many there are."""
    first = archs[0]
    decisions = sum(len(row) for row in first.ops) + len(first.syncs)
    differing = max(
        sum(
            a != b
            for ra, rb in zip(first.ops, other.ops, strict=True)
            for a, b in zip(ra, rb, strict=True)
        )
        + sum(a != b for a, b in zip(first.syncs, other.syncs, strict=True))
        for other in archs
    )
    return {"same": differing == 0, "differing": differing, "decisions": decisions}


class ChapterRun:
    """One run of the chapter in ``profile`` with ``seed``: a :class:`course_lib.chapter.Run`
    (``self.run``: settings, section times, the metrics, the resume cache) with the
    chapter's data and what the sections found so far."""

    def __init__(self, profile: str, seed: int = 0, progress: bool = True) -> None:
        self.run = chapter.start("nas", NOTEBOOK, profile, seed, nas_settings)
        self.settings: NasSettings = self.run.settings
        self.profile, self.seed, self.progress = profile, seed, progress
        self.space = self.settings.space
        self.device = train.default_device()
        self.cifar = data.load_cifar10()
        self.searches: dict[float, list[SearchResult]] = {}
        self.best: SearchResult | None = None
        #: Wall seconds of each task of a mapped section (by section name), for the time
        #: the section takes on N workers (:func:`course_lib.cluster.estimate_minutes`).
        self.task_seconds: dict[str, list[float]] = {}
        self.metrics = self.run.metrics
        self.metrics.update(profile=profile, protocol=self.protocol())

    def cache(self, name: str) -> Path | None:
        """A cache file of a full run (``None`` in the quick profile: nothing is kept)."""
        return self.run.cache(name)

    def protocol(self) -> dict:
        s = self.settings
        return {
            "seeds": [self.seed + i for i in s.seeds],
            "search_seeds": [self.seed + i for i in s.search_seeds],
            "retrain_epochs": s.retrain.epochs,
            "final_epochs": s.final.epochs,
            "search_epochs": s.search.weights.epochs,
            "search_scheme": s.search.scheme,
            "weights_lr": s.search.weights.lr,
            "decision_lr": s.search.arch_lr,
            "alpha": s.search.alpha,
            "widths": list(self.space.widths),
            "train_images": "all"
            if s.data.train_per_class is None
            else 10 * s.data.train_per_class,
            "val_images": s.data.images("val"),
            "test_images": s.data.images("test"),
            "deploy_macs": s.deploy_macs,
            "latency": f"batch 1, {s.latency_rounds} interleaved rounds, median and 95 % interval",
            "estimate_min": s.estimate_min,
        }

    def loaders(self, settings: data.DataSettings) -> data.Loaders:
        return data.make_loaders(self.cifar, settings, seed=self.seed, device=self.device)

    # --- learning rates ---------------------------------------------------------------

    @chapter.section("learning rates")
    def lr_check(self) -> dict:
        """The same short search with the paper's learning rates, ours for the weights
        only, and ours: the supernet's accuracy and how far the decisions moved."""
        s = self.settings
        loaders = self.loaders(s.lr_check_data)
        ours = s.search_for(s.lr_check_beta)
        configs = {
            "paper": replace(s.paper_search(), beta=s.lr_check_beta),
            "our weights, paper's decisions": replace(ours, arch_lr=PAPER_ARCH_LR),
            "ours": ours,
        }
        runs = {}
        for name, config in tqdm(configs.items(), desc="learning rates", disable=not self.progress):
            config = replace(config, weights=replace(config.weights, epochs=s.lr_check_epochs))
            train.seed_everything(self.seed)
            model = SuperNet(self.space).to(self.device)
            h = search(model, loaders.train, config, loaders.val, seed=self.seed, progress=False)
            runs[name] = {
                "weights_lr": config.weights.lr,
                "weights_momentum": config.weights.momentum,
                "decision_lr": config.arch_lr,
                "val_accuracy": h.val_accuracy[-1],
                "op_probs": h.op_probs[-1],
                "sync_probs": h.sync_probs[-1],
                "time_s": h.wall_time_s,
            }
        self.metrics["lr_check"] = runs
        self.metrics["protocol"]["lr_check"] = {
            "train_images": len(loaders.train.labels),
            "epochs": s.lr_check_epochs,
            "beta": s.lr_check_beta,
        }
        return runs

    # --- experiment 1: sync points ------------------------------------------------------

    @chapter.section("experiment 1")
    def sync_configs(self) -> dict:
        """The paper's Fig. 7: four fixed sync configurations, trained from scratch."""
        s, out = self.settings, {}
        seeds = tuple(self.metrics["protocol"]["seeds"])
        for name, syncs in tqdm(
            SYNC_CONFIGS.items(), desc="experiment 1", disable=not self.progress
        ):
            arch = Architecture.uniform(
                self.space, ("conv3x3", "conv5x5"), syncs[: self.space.levels]
            )
            a = assess(
                self.space,
                arch,
                self.cifar,
                s.data,
                s.retrain,
                seeds,
                s.latency_rounds,
                cache=self.cache(f"sync_{name.replace(' ', '_')}.json"),
            )
            out[name] = a.as_dict()
        self.metrics["sync_configs"] = out
        return out

    # --- experiment 2: the beta sweep -----------------------------------------------------

    @cached_property
    def search_loaders(self) -> data.Loaders:
        return self.loaders(self.settings.search_data)

    def _search(self, beta: float, seed: int, sync_costs=None, tag: str = "") -> SearchResult:
        config = self.settings.search_for(beta, sync_costs)
        cache = self.cache(f"search{tag}_beta{beta:g}_seed{seed}.pt")
        loaders = self.search_loaders
        return search_and_derive(self.space, config, loaders.train, loaders.val, seed, cache)

    @chapter.section("experiment 2, searches")
    def beta_searches(self) -> list[dict]:
        """The paper's Table 2: one search per beta and search seed, and whether the seeds
        agree on the derived network."""
        s, sweep = self.settings, []
        jobs = [(b, i) for b in s.betas for i in self.metrics["protocol"]["search_seeds"]]
        jobs = [(b, i, self.cache(f"search_beta{b:g}_seed{i}.pt")) for b, i in jobs]
        loaders = self.search_loaders
        task = partial(search_job, self.space, s, loaders.train, loaders.val)
        done = map_tasks(task, jobs, desc="searches", progress=self.progress)
        self.task_seconds["experiment 2, searches"] = [d.seconds for d in done]
        for (beta, _, _), result in zip(jobs, done, strict=True):
            self.searches.setdefault(beta, []).append(result.value)
        for beta, found in self.searches.items():
            sweep.append(
                {
                    "beta": beta,
                    "structure": found[0].arch.describe(),
                    "searches": [_search_record(r) for r in found],
                    "agreement": agreement([r.arch for r in found]),
                }
            )
        self.metrics["beta_sweep"] = sweep
        return sweep

    @chapter.section("experiment 2, retraining")
    def beta_retraining(self) -> list[dict]:
        """The second training of every derived network: from its own search's weights
        (the paper's warm start), and, for the first search seed, from scratch."""
        s = self.settings
        self._require("beta_sweep", "beta_searches")
        entries = {e["beta"]: e for e in self.metrics["beta_sweep"]}
        for beta, found in tqdm(
            self.searches.items(), desc="retraining", disable=not self.progress
        ):
            warm = [
                assess(
                    self.space,
                    r.arch,
                    self.cifar,
                    s.data,
                    s.retrain,
                    (r.seed,),
                    s.latency_rounds,
                    cache=self.cache(f"warm_beta{beta:g}_seed{r.seed}.json"),
                    starts=[r.weights],
                ).as_dict()
                for r in found
            ]
            scratch = assess(
                self.space,
                found[0].arch,
                self.cifar,
                s.data,
                s.retrain,
                (found[0].seed,),
                s.latency_rounds,
                cache=self.cache(f"scratch_beta{beta:g}.json"),
            ).as_dict()
            accuracies = [w["accuracy_mean"] for w in warm]
            entries[beta].update(
                {
                    **{k: warm[0][k] for k in ("macs", "params", "latency_ms", "parallel_speedup")},
                    "retrain": "warm_start",
                    "accuracy_mean": statistics.fmean(accuracies),
                    "accuracy_std": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
                    "val_accuracy_mean": statistics.fmean(w["val_accuracy_mean"] for w in warm),
                    "warm_start": warm,
                    "from_scratch": scratch,
                }
            )
        return self.metrics["beta_sweep"]

    # --- a sync point priced by time ------------------------------------------------------

    @chapter.section("measured sync cost")
    def sync_cost(self) -> dict:
        """Measure what a sync point costs in time (cached in a full run, so that a resumed
        run searches with the same prices)."""
        key = {"space": asdict(self.space), "rounds": self.settings.latency_rounds}
        cost = load_or_compute(
            self.cache("sync_cost.json"),
            key,
            lambda: sync_cost(self.space, self.settings.latency_rounds),
        )
        self.metrics["sync_cost"] = cost
        return cost

    @chapter.section("measured sync cost")
    def latency_cost_sweep(self) -> list[dict]:
        """The beta sweep again (first search seed), with ``C_sync`` priced by the measured
        time: which structures change."""
        self._require("sync_cost", "sync_cost")
        self._require("beta_sweep", "beta_searches")
        costs = tuple(self.metrics["sync_cost"]["sync_costs"])
        seed = self.metrics["protocol"]["search_seeds"][0]
        flops_model = {
            e["beta"]: e["searches"][0]["architecture"] for e in self.metrics["beta_sweep"]
        }
        out = []
        for beta in tqdm(
            self.settings.betas, desc="searches, timed sync cost", disable=not self.progress
        ):
            r = self._search(beta, seed, costs, tag="_timed")
            out.append(
                {
                    **_search_record(r),
                    "beta": beta,
                    "macs": architecture_cost(self.space, r.arch).mults,
                    "same_as_flops_model": r.arch.as_dict() == flops_model.get(beta),
                }
            )
        self.metrics["latency_cost_sweep"] = out
        return out

    # --- the best network ---------------------------------------------------------------

    @chapter.section("best network")
    def best_network(self) -> dict:
        """The network to deploy, trained longer from its search's weights: within the MAC
        budget ``deploy_macs``, the cheapest of the derived networks whose validation accuracy
        is within noise of the best one's (:func:`.summary.deploy_choice`)."""
        s = self.settings
        self._require("beta_sweep", "beta_searches")
        if "warm_start" not in self.metrics["beta_sweep"][0]:
            raise RuntimeError("run ChapterRun.beta_retraining() before best_network()")
        choice = deploy_choice(self.metrics, s.deploy_macs)
        beta, index = choice["beta"], choice["index"]
        self.best = self.searches[beta][index]
        a = assess(
            self.space,
            self.best.arch,
            self.cifar,
            s.data,
            s.final,
            (self.best.seed,),
            s.latency_rounds,
            cache=self.cache("best.json"),
            starts=[self.best.weights],
        )
        best = {
            "beta": beta,
            "search_seed": self.best.seed,
            "epochs": s.final.epochs,
            **a.as_dict(),
        }
        self.metrics.update(
            best_network=best, retrain="warm_start", best_test_accuracy=a.accuracy_mean
        )
        return best

    # --- multicore ----------------------------------------------------------------------

    @chapter.section("multicore")
    def multicore(self) -> list[dict]:
        """Path-parallel vs sequential vs ONNX Runtime's threads, at the paper's and the
        course's widths, batch 1 and 16 (:func:`course_lib.nas.multicore.parallel_table`)."""
        s = self.settings
        if self.best is None:
            raise RuntimeError("run ChapterRun.best_network() before multicore()")
        rows = parallel_table(
            self.best.arch,
            s.multicore_widths,
            s.multicore_batches,
            s.multicore_rounds,
            base=self.space,
            progress=self.progress,
        )
        self.metrics["parallel_table"] = rows
        for widths, key in (
            ("paper", "parallel_speedup_b1_paper_widths"),
            ("course", "parallel_speedup_b1"),
        ):
            row = next(
                (
                    r
                    for r in rows
                    if (r["widths"], r["network"], r["batch"]) == (widths, "best searched", 1)
                ),
                None,
            )
            if row is not None:
                ratio = row["speedup"]["path-parallel"]
                self.metrics[key] = ratio["median"]
                self.metrics[f"{key}_interval"] = ratio["interval"]
                if widths == "course":
                    self.metrics["parallel"] = {
                        k: row[k] for k in ("structure", "latency_ms", "speedup")
                    }
        return rows

    def _require(self, key: str, method: str) -> None:
        if key not in self.metrics:
            raise RuntimeError(f"run ChapterRun.{method}() first: this section builds on it")

    # --- results ------------------------------------------------------------------------

    def wall_time_s(self) -> float:
        return self.run.wall_time_s()

    def save(self) -> Path | None:
        """Add the headline numbers and the section times; ``results/nas.json`` in the full
        profile, nothing in the quick one."""
        return self.run.finish(headline(self.metrics))


def search_job(space, settings: NasSettings, train_loader, val_loader, job) -> SearchResult:
    """One search of the beta sweep, ``job`` = (beta, seed, cache file or ``None``): one
    task of the map (the FLOPs-priced sync cost, as :meth:`ChapterRun._search`)."""
    beta, seed, cache = job
    config = settings.search_for(beta)
    return search_and_derive(space, config, train_loader, val_loader, seed, cache)


def _search_record(r: SearchResult) -> dict:
    h = r.history
    return {
        "seed": r.seed,
        "structure": r.arch.describe(),
        "architecture": r.arch.as_dict(),
        "op_probs": h.op_probs[-1],
        "sync_probs": h.sync_probs[-1],
        "decision_margin": min(margin(h.op_probs[-1]), margin(h.sync_probs[-1])),
        "supernet_val_accuracy": h.val_accuracy[-1] if h.val_accuracy else None,
        "ops_loss": h.ops_loss[-1],
        "sync_loss": h.sync_loss[-1],
        "search_time_s": h.wall_time_s,
        "op_probs_history": h.op_probs,
        "sync_probs_history": h.sync_probs,
    }
