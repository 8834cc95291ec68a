"""One small map interface for independent jobs: a local loop by default, Ray tasks on a
cluster when an address is given.

    done = map_tasks(train_one, jobs, desc="methods")      # [Done(value, seconds), ...]
    minutes = estimate_minutes([d.seconds for d in done], workers=8)

The address comes from the ``address`` argument, else from ``$COURSE_RAY_ADDRESS``
(``course run ... --ray [ADDRESS]`` and ``course grade run ... --ray [ADDRESS]`` set it;
``auto`` joins the cluster this machine belongs to). Without one, nothing imports Ray and
every job runs here, in order, as a plain loop. Results come back in the order of
``items`` either way; ``on_done`` sees each one as it finishes. A task whose worker dies is
run again (``retries``); an exception raised by ``fn`` is not retried, it is raised here.
See ``book/grading.md`` (a cluster, what a worker needs, the cost model).
"""

from __future__ import annotations

import contextlib
import heapq
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

#: The environment variable that sends the maps of a run to a Ray cluster.
ADDRESS_ENV = "COURSE_RAY_ADDRESS"
INSTALL_HINT = 'pip install -e ".[cluster]"'


@dataclass(frozen=True)
class Done:
    """One finished job: what ``fn`` returned and its wall time in seconds (measured where
    it ran, so without the cluster's transfers)."""

    value: Any
    seconds: float


def ray_address(address: str | None = None) -> str | None:
    """``address``, else ``$COURSE_RAY_ADDRESS``, else ``None`` (run locally)."""
    return address or os.environ.get(ADDRESS_ENV) or None


def timed(fn: Callable[[Any], Any], item: Any) -> Done:
    """``fn(item)`` and its wall time (seconds)."""
    start = time.perf_counter()
    value = fn(item)
    return Done(value, time.perf_counter() - start)


def map_tasks(
    fn: Callable[[Any], Any],
    items: Sequence[Any],
    *,
    address: str | None = None,
    desc: str = "tasks",
    progress: bool = True,
    on_done: Callable[[int, Done], None] | None = None,
    retries: int = 3,
    num_cpus: float = 1,
) -> list[Done]:
    """``[timed(fn, item) for item in items]``, here or as Ray tasks (one per item, each
    with ``num_cpus`` CPUs, run again up to ``retries`` times if its worker dies) when an
    address is given (:func:`ray_address`). ``on_done(index, done)`` is called in the order
    the jobs finish; the list is in the order of ``items``."""
    items = list(items)
    address = ray_address(address)
    bar = tqdm(total=len(items), desc=desc, disable=not progress or not items)
    try:
        if address is None:
            return _local(fn, items, bar, on_done)
        return _on_ray(fn, items, address, bar, on_done, retries, num_cpus)
    finally:
        bar.close()


def _local(fn, items, bar, on_done) -> list[Done]:
    results = []
    for index, item in enumerate(items):
        done = timed(fn, item)
        results.append(done)
        if on_done is not None:
            on_done(index, done)
        bar.update()
    return results


def connect(address: str):
    """The ``ray`` module, connected to the cluster at ``address`` (once per process)."""
    try:
        import ray
    except ImportError as missing:
        raise RuntimeError(
            f"a Ray address was given ({address!r}) but Ray is not installed: {INSTALL_HINT}"
        ) from missing
    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False, logging_level="WARNING")
    return ray


def _on_ray(fn, items, address, bar, on_done, retries, num_cpus) -> list[Done]:
    ray = connect(address)
    task = ray.remote(max_retries=retries, retry_exceptions=False, num_cpus=num_cpus)(timed)
    fn_ref = ray.put(fn)  # shipped once, not once per task
    pending = {task.remote(fn_ref, item): i for i, item in enumerate(items)}
    results: list[Done | None] = [None] * len(items)
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        index = pending.pop(ready[0])
        results[index] = ray.get(ready[0])
        if on_done is not None:
            on_done(index, results[index])
        bar.update()
    return results


def estimate_minutes(seconds: Sequence[float], workers: int) -> float:
    """Wall minutes of jobs lasting ``seconds`` on ``workers`` workers, each job given to
    the first free worker, longest first (transfers and start-up not counted)."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    loads = [0.0] * min(workers, max(1, len(seconds)))
    for job in sorted(seconds, reverse=True):
        heapq.heapreplace(loads, loads[0] + job)
    return max(loads) / 60


# --- a cluster on this machine, for the tests and the benchmark ---------------------------


def _ports(base: int) -> dict[str, int]:
    """The ports of one node, from ``base`` up (so that two clusters on one machine, or two
    nodes of one, never ask for the same port)."""
    names = (
        "node-manager-port",
        "object-manager-port",
        "metrics-export-port",
        "dashboard-agent-listen-port",
        "dashboard-agent-grpc-port",
        "runtime-env-agent-port",
    )
    ports = {name: base + i for i, name in enumerate(names)}
    return {**ports, "min-worker-port": base + 10, "max-worker-port": base + 60}


def _start_node(args: list[str], base: int, env: dict[str, str], tries: int = 3) -> int:
    """``ray start`` for one node in a session of its own; returns that session's process
    group (every process of the node), once the node has joined. A node that does not come
    up (its agents can take over 30 s to start on a busy 2-core machine, and Ray gives them
    30 s) is stopped and started again, up to ``tries`` times."""
    ray = Path(sys.executable).with_name("ray")
    ports = [f"--{name}={port}" for name, port in _ports(base).items()]
    command = [str(ray), "start", "--disable-usage-stats", "--include-log-monitor=false"]
    for attempt in range(1, tries + 1):
        node = subprocess.Popen(
            command + args + ports,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        output, _ = node.communicate()
        if node.returncode == 0:
            return node.pid
        _stop(node.pid)
        if attempt == tries:
            raise RuntimeError(f"ray start failed {tries} times:\n{output[-2000:]}")
    raise AssertionError("unreachable")


def _stop(group: int) -> None:
    """Stop the processes of one node (its process group): SIGTERM, then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(group, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                os.killpg(group, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


@contextlib.contextmanager
def local_cluster(
    nodes: int = 2, cpus_per_node: int = 1, object_store_mb: int = 200
) -> Iterator[str]:
    """A Ray cluster of ``nodes`` node processes on this machine (a head and ``nodes - 1``
    more, ``cpus_per_node`` CPUs each; ``ray start``), on random ports and in a private
    temporary folder; yields its address and stops every process it started (by process
    group) at the end. The nodes' workers inherit this process's environment
    (``COURSE_DATA_DIR``)."""
    base = random.randrange(20000, 60000, 500)
    address = f"127.0.0.1:{base + 90}"
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: socket paths are limited
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_agent_register_timeout_ms": "180000"}
    common = [
        f"--num-cpus={cpus_per_node}",
        f"--object-store-memory={object_store_mb << 20}",
        "--node-ip-address=127.0.0.1",
    ]
    head = [
        "--head",
        f"--port={base + 90}",
        f"--ray-client-server-port={base + 91}",
        f"--dashboard-port={base + 92}",
        "--include-dashboard=false",
        f"--temp-dir={temp}",
    ]
    groups = []
    try:
        groups.append(_start_node(head + common, base, env))
        for i in range(1, nodes):
            groups.append(_start_node([f"--address={address}", *common], base + 100 * i, env))
        yield address
    finally:
        for group in reversed(groups):
            _stop(group)
        shutil.rmtree(temp, ignore_errors=True)
