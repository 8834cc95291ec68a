"""The map interface (:mod:`course_lib.cluster`) here and on a real Ray cluster of two node
processes started by the test (``ray start``, one CPU each, stopped at the end): the same
results as the local loop, a worker killed mid-task is retried, a class graded through Ray
gets the scores and report of a local run, and a tiny sweep of chapter 5b equals its loop.

The cluster tests are skipped, with a message, where Ray is not installed
(``pip install -e ".[cluster]"``).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from test_bnn_comparison import tiny_settings
from test_bnn_method_training import tiny_loaders
from test_grading import write_submission
from test_grading_security import gradebook_of, toy_course

from course_lib import cluster
from course_lib.bnn.comparison import compare_methods
from course_lib.grader import pipeline, sandbox
from course_lib.models import resnet20

HAVE_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(
    not HAVE_RAY, reason=f"Ray is not installed ({cluster.INSTALL_HINT} to run these tests)"
)


def square_after(item: tuple[int, float]) -> int:
    value, seconds = item
    time.sleep(seconds)
    return value * value


# --- here: no Ray needed ------------------------------------------------------------------


def test_the_local_map_is_a_timed_loop_in_item_order(monkeypatch):
    monkeypatch.delenv(cluster.ADDRESS_ENV, raising=False)
    seen = []
    done = cluster.map_tasks(
        square_after,
        [(3, 0.02), (1, 0.0), (2, 0.01)],
        progress=False,
        on_done=lambda i, d: seen.append(i),
    )
    assert [d.value for d in done] == [9, 1, 4]
    assert seen == [0, 1, 2]
    assert done[0].seconds >= 0.02 and done[1].seconds < 0.02


def test_without_an_address_nothing_imports_ray():
    code = (
        "import sys\n"
        "from course_lib import cli, cluster\n"
        "from course_lib.bnn import comparison\n"
        "from course_lib.nas import experiments\n"
        "assert [d.value for d in cluster.map_tasks(abs, [-2, 3], progress=False)] == [2, 3]\n"
        "assert 'ray' not in sys.modules, 'ray was imported'\n"
    )
    env = {k: v for k, v in os.environ.items() if k != cluster.ADDRESS_ENV}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr[-2000:]


def test_an_address_without_ray_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    monkeypatch.setenv(cluster.ADDRESS_ENV, "auto")
    with pytest.raises(RuntimeError, match=re.escape(cluster.INSTALL_HINT)):
        cluster.map_tasks(abs, [1], progress=False)


def test_the_estimate_gives_each_job_to_the_first_free_worker():
    assert cluster.estimate_minutes([60.0] * 4, workers=2) == pytest.approx(2.0)
    assert cluster.estimate_minutes([120.0, 60.0, 60.0], workers=2) == pytest.approx(2.0)
    assert cluster.estimate_minutes([60.0] * 3, workers=10) == pytest.approx(1.0)
    assert cluster.estimate_minutes([], workers=3) == 0.0
    with pytest.raises(ValueError, match="at least 1"):
        cluster.estimate_minutes([1.0], workers=0)


def test_grade_run_takes_an_optional_ray_address():
    import argparse

    parser = argparse.ArgumentParser()
    pipeline.add_arguments(parser)
    assert parser.parse_args(["run", "toy"]).ray is None
    assert parser.parse_args(["run", "toy", "--ray"]).ray == "auto"
    assert parser.parse_args(["run", "toy", "--ray", "10.0.0.5:6379"]).ray == "10.0.0.5:6379"


# --- on a local cluster: a head and a second node, one CPU each ---------------------------


@pytest.fixture(scope="module")
def ray_cluster():
    """The address of a two-node cluster on this machine; this process is its driver."""
    if not HAVE_RAY:
        pytest.skip(f"Ray is not installed ({cluster.INSTALL_HINT})")
    import ray
    from ray import cloudpickle

    # this module is not importable on the workers: its functions travel by value
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with cluster.local_cluster(nodes=2, cpus_per_node=1) as address:
        try:
            yield address
        finally:
            ray.shutdown()
            cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@needs_ray
@pytest.mark.slow
def test_the_cluster_has_two_nodes_and_maps_like_the_local_loop(ray_cluster):
    import ray

    items = [(v, 0.3 - 0.05 * v) for v in range(6)]  # later items finish first
    finished = []
    done = cluster.map_tasks(
        square_after,
        items,
        address=ray_cluster,
        progress=False,
        on_done=lambda i, d: finished.append(i),
    )
    local = cluster.map_tasks(square_after, items, address=None, progress=False)
    assert [d.value for d in done] == [d.value for d in local] == [v * v for v in range(6)]
    assert sorted(finished) == list(range(6))
    assert all(d.seconds >= 0.0 for d in done)
    alive = [n for n in ray.nodes() if n["Alive"]]
    assert len(alive) == 2 and ray.cluster_resources()["CPU"] == 2


def stall_once(folder: str, item: int) -> int:
    """The first attempt of item 0 records its process id and waits to be killed; its
    retry finds the record and finishes. Other items finish at once."""
    record = Path(folder) / f"{item}.pid"
    if item == 0 and not record.exists():
        record.write_text(str(os.getpid()))
        time.sleep(120)
    return item * 10


@needs_ray
@pytest.mark.slow
def test_a_worker_killed_mid_task_is_retried_and_nothing_is_lost(ray_cluster, tmp_path):
    import threading
    from functools import partial

    def kill_first_worker():
        record = tmp_path / "0.pid"
        deadline = time.monotonic() + 120
        while not record.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.2)
        os.kill(int(record.read_text()), signal.SIGKILL)

    killer = threading.Thread(target=kill_first_worker)
    killer.start()
    try:
        task = partial(stall_once, str(tmp_path))
        done = cluster.map_tasks(task, [0, 1], address=ray_cluster, progress=False, retries=2)
    finally:
        killer.join()
    assert [d.value for d in done] == [0, 10]
    with pytest.raises(ProcessLookupError):
        os.kill(int((tmp_path / "0.pid").read_text()), 0)  # the first worker is gone


# --- grading a class through the cluster ----------------------------------------------------


def graded(root: Path, *options: str) -> dict:
    """``course grade run toy`` in ``root``: exit status, totals, cell scores, the report."""
    command = [sys.executable, "-m", "course_lib.grader", "run", "toy", "--course-dir", str(root)]
    run = subprocess.run([*command, "--timeout", "60", *options], capture_output=True, text=True)
    with gradebook_of(root) as gb:
        cells = {
            (s, g.name): g.score
            for s in ("ann", "cal", "dan")
            for g in gb.find_submission_notebook("toy", "toy", s).grades
        }
    with open(root / "grades.csv", newline="") as f:
        totals = {row["student_id"]: float(row["raw_score"]) for row in csv.DictReader(f)}
    report = root / "assignments" / "reports" / "toy-integrity.md"
    return {
        "status": run.returncode,
        "totals": totals,
        "cells": cells,
        "report": report.read_text(),
        "feedback": sorted(
            p.parent.parent.name for p in root.glob("assignments/feedback/*/toy/*.html")
        ),
        "log": run.stdout + run.stderr,
    }


def class_of_four(root: Path) -> Path:
    """ann (right), cal (wrong), dan (switches the checks off), eve (not a notebook)."""
    toy_course(root)
    write_submission(root, "eve", '{"cells": [', "toy")
    return root


@needs_ray
@pytest.mark.slow
def test_a_class_graded_through_ray_gets_the_scores_and_report_of_a_local_run(
    ray_cluster, tmp_path
):
    local = graded(class_of_four(tmp_path / "local"), "--workers", "2")
    remote = graded(class_of_four(tmp_path / "ray"), "--ray", ray_cluster)
    assert local["totals"] == {"ann": 3.0, "cal": 1.0, "dan": 1.0, "eve": 0.0}, local["log"]
    for key in ("status", "totals", "cells", "report", "feedback"):
        assert remote[key] == local[key], (key, remote["log"][-3000:])
    assert remote["status"] == 1, "eve's file is not a notebook"
    assert f"on the Ray cluster at {ray_cluster} (2 CPUs)" in remote["log"]
    assert re.search(r"^\[3/3\] \w+: ", remote["log"], flags=re.M), "progress is printed"
    assert "dan: 1/3 auto points; tampering (1)" in remote["log"]
    assert "recorded 3 graded submission(s) in the gradebook" in remote["log"]


@pytest.mark.slow
def test_a_worker_without_a_sandbox_refuses_or_says_so_as_require_sandbox_decides(
    tmp_path, monkeypatch
):
    """The task itself (no cluster needed): on a worker whose bubblewrap is off."""
    root = class_of_four(tmp_path)
    packed = pipeline.pack_course(root, "toy", "ann")
    options = ["--Execute.timeout=60", "--RefereedExecute.threads=1"]
    monkeypatch.setenv(sandbox.SWITCH_ENV, "none")
    strict = ["--RefereedExecute.require_sandbox=True"]
    refused, files = pipeline.grade_packed("toy", options + strict, ("ann", packed))
    assert not refused.ok and pipeline.NO_SANDBOX in refused.message and files == {}
    graded, files = pipeline.grade_packed("toy", options, ("ann", packed))
    assert graded.ok, graded.message
    record = json.loads(next(v for k, v in files.items() if k.endswith(".integrity.json")))
    assert any("switched off" in w for w in record["warnings"]), record["warnings"]
    assert sorted(files) == ["toy.integrity.json", "toy.ipynb"]


# --- a tiny sweep of chapter 5b ----------------------------------------------------------------


@needs_ray
@pytest.mark.slow
def test_a_tiny_chapter_5b_sweep_on_ray_equals_the_local_loop(ray_cluster, monkeypatch):
    torch.set_num_threads(1)  # as the workers (one CPU each): the same arithmetic
    settings = replace(tiny_settings(1e3), close_extra_seeds=0)
    methods = ("ste", "dabnn", "fp")

    def sweep() -> str:
        torch.manual_seed(0)
        start = resnet20().eval()  # a seeded stand-in for chapter 5's twin
        m = compare_methods(tiny_loaders(), settings, start, methods=methods, progress=False)
        for entry in m["methods"].values():
            entry.pop("minutes")
            for run in entry["runs"]:
                run.pop("minutes")
        return json.dumps({k: m[k] for k in ("methods", "close", "packed")}, sort_keys=True)

    monkeypatch.delenv(cluster.ADDRESS_ENV, raising=False)
    local = sweep()
    monkeypatch.setenv(cluster.ADDRESS_ENV, ray_cluster)
    assert sweep() == local


@needs_ray
@pytest.mark.slow
def test_chapter_3s_pruning_runs_on_ray_equal_the_local_loop(ray_cluster, monkeypatch):
    from test_taylor import image_loader, tiny_vgg

    from course_lib.data import Loaders
    from course_lib.taylor import compare_criteria
    from course_lib.taylor.loop import Budget
    from course_lib.taylor.settings import taylor_settings
    from course_lib.taylor.transfer import Transferred
    from course_lib.train import TrainConfig

    torch.set_num_threads(1)  # as the workers (one CPU each): the same arithmetic
    finetune = TrainConfig(epochs=1, lr=0.05, schedule="cosine", autocast=False)
    settings = replace(
        taylor_settings("quick"),
        finetune=replace(finetune, channels_last=False),
        filters_per_round=8,
        budget=Budget(keep=0.8, measure="params"),
        criteria=("taylor", "l1"),
    )
    loaders = Loaders(image_loader(seed=0), image_loader(seed=1), image_loader(seed=2))
    unpruned = {s: Transferred(tiny_vgg(3, seed=s), 0.0, 0.0, 0.0) for s in (0, 1)}

    def sweep() -> tuple[str, list]:
        c = compare_criteria(unpruned, loaders, settings, progress=False)
        runs = c.as_dict()["criteria"]
        for by_seed in runs.values():
            for run in by_seed.values():
                for r in run["rounds"]:
                    r.pop("time_s")
        shapes = [
            [tuple(p.shape) for p in c.pruned[k][s].parameters()]
            for k in settings.criteria
            for s in unpruned
        ]
        return json.dumps(runs, sort_keys=True), shapes

    monkeypatch.delenv(cluster.ADDRESS_ENV, raising=False)
    local = sweep()
    monkeypatch.setenv(cluster.ADDRESS_ENV, ray_cluster)
    assert sweep() == local


# --- chapter 2's selection runs ------------------------------------------------------------


def fake_cifar(per_class: int = 520, seed: int = 0):
    """Random images with CIFAR-10's layout, enough per class for the fixed validation split
    (500 per class) and a small training subset."""
    from course_lib.data import Cifar10

    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(10).repeat_interleave(per_class)
    images = torch.randint(0, 256, (len(labels), 3, 32, 32), generator=g, dtype=torch.uint8)
    return Cifar10(images, labels, images[:100], labels[:100])


@needs_ray
@pytest.mark.slow
def test_chapter_2s_selection_runs_on_ray_equal_the_local_loop(ray_cluster, monkeypatch):
    from functools import partial

    from course_lib.data import DataSettings
    from course_lib.models import BaselineCNN
    from course_lib.prune import selection
    from course_lib.prune.settings import pruning_settings

    torch.set_num_threads(1)  # as the workers (one CPU each): the same arithmetic
    quick = pruning_settings("quick")
    subset = DataSettings(train_per_class=4, val_per_class=2, batch_size=16)
    settings = replace(quick, selection=replace(quick.selection, data=subset, seeds=2))
    torch.manual_seed(0)
    dense = BaselineCNN(widths=(8, 16, 32), hidden=32).eval()
    shared = selection.Shared(fake_cifar(), dense, settings, 0, torch.device("cpu"))
    jobs = [
        (selection.Candidate("l1_filter", "plain"), 0),
        (selection.Candidate("l2_group", "bn_scale", 0.1), 1),
    ]

    def sweep() -> list:
        done = cluster.map_tasks(partial(selection.candidate_run, shared), jobs, progress=False)
        runs = [d.value for d in done]
        for run in runs:
            run.pop("wall_time_s")
        return runs

    monkeypatch.delenv(cluster.ADDRESS_ENV, raising=False)
    local = sweep()
    monkeypatch.setenv(cluster.ADDRESS_ENV, ray_cluster)
    assert sweep() == local
    assert [r["records"][-1].params for r in local][0] < sum(p.numel() for p in dense.parameters())
