"""The one way a chapter runs: its settings for a profile, its sections timed against their
estimates, the resume cache of a full run, and its metrics saved with provenance.

A chapter notebook starts a :class:`Run`, fills ``run.metrics`` section by section and
ends with :meth:`Run.finish`::

    run = chapter.start("taylor", "notebooks/03_taylor.ipynb", profile, seed, taylor_settings)
    with run.section("criteria"):          # or @chapter.section("criteria") on a function
        run.metrics["criteria"] = ...      # whose first argument holds the run
    saved = run.finish(summary.headline(run.metrics))

The conventions every chapter package keeps (see ``CONTRIBUTING.md``):

- **settings**: ``<chapter>/settings.py`` gives one frozen dataclass per profile, with
  ``estimate_min`` (minutes per section on the course's 2-core CPU);
- **targets**: ``summary.TARGETS``; **headline numbers**: ``summary.headline(metrics)``,
  merged into the metrics by :meth:`Run.finish`;
- **figures**: a plot function returns an open :class:`matplotlib.figure.Figure`; the
  notebook assigns it (``fig = plots.x(m)``) and Jupyter shows it when the cell ends;
- **resume**: what a full run should not redo after an interruption goes to
  :meth:`Run.cache` (``runs/full/<chapter>_cache/``); quick runs cache nothing.
"""

from __future__ import annotations

import contextlib
import functools
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from IPython.display import Markdown

from . import paths, results
from .profiles import check_profile
from .report import markdown_table


@dataclass
class Run:
    """One run of a chapter. ``chapter`` names its results file (``results/<chapter>.json``)
    and cache folder; ``notebook`` is the path recorded in the provenance's command;
    ``section_time_s`` holds each section's wall time (seconds); ``commit``: the code a full
    run started from (read at :func:`start`, before the run rewrites its own checkpoints)."""

    chapter: str
    notebook: str
    profile: str
    seed: int
    settings: Any
    metrics: dict = field(default_factory=dict)
    section_time_s: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    commit: str | None = None

    @property
    def estimate_min(self) -> dict[str, float]:
        """The settings' expected minutes per section (empty if they give none)."""
        return dict(getattr(self.settings, "estimate_min", {}))

    @property
    def cache_dir(self) -> Path | None:
        """``runs/full/<chapter>_cache/`` in the full profile, ``None`` in the quick one."""
        return paths.RUNS_DIR / "full" / f"{self.chapter}_cache" if self.profile == "full" else None

    def cache(self, name: str) -> Path | None:
        """The cache file ``name`` of a full run (``None`` in the quick profile)."""
        return None if self.cache_dir is None else self.cache_dir / name

    @contextlib.contextmanager
    def section(self, name: str) -> Iterator[None]:
        """Add the block's wall time to section ``name`` (also when the block raises; a
        section entered twice, e.g. by two functions, counts both)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            self.section_time_s[name] = self.section_time_s.get(name, 0.0) + elapsed

    def wall_time_s(self) -> float:
        """Seconds since the run started."""
        return time.perf_counter() - self.started

    def finish(self, headline: dict | None = None) -> Path | None:
        """Merge the ``headline`` numbers and the section times into ``metrics``, replace it
        (in place) by its JSON round trip, the form that is saved, so that every profile
        shows what a saved run would, and save it with provenance in the full profile.
        Returns the path written, or ``None`` for a quick run."""
        self.metrics.update(headline or {})
        self.metrics["section_time_s"] = dict(self.section_time_s)
        saved_form = json.loads(json.dumps(self.metrics))
        self.metrics.clear()
        self.metrics.update(saved_form)
        command = results.default_command(self.notebook)
        return results.save_results(
            self.chapter, self.profile, self.metrics, self.wall_time_s(), command, self.commit
        )


def start(
    chapter: str,
    notebook: str,
    profile: str,
    seed: int,
    settings_of: Callable[[str], Any],
    metrics: dict | None = None,
) -> Run:
    """A :class:`Run` of ``chapter`` with ``settings_of(profile)``; an unknown profile stops
    here with a message naming the known ones."""
    check_profile(profile)
    run = Run(chapter, notebook, profile, seed, settings_of(profile), dict(metrics or {}))
    if profile == "full":
        run.commit = results.git_commit()
    return run


def section(name: str) -> Callable:
    """Time a section function as ``name`` in its run. The function's first argument is the
    :class:`Run` or an object that holds it as ``.run`` (a chapter's context)."""

    def wrap(function: Callable) -> Callable:
        @functools.wraps(function)
        def timed(owner: Any, *args: Any, **kwargs: Any) -> Any:
            run = owner if isinstance(owner, Run) else owner.run
            with run.section(name):
                return function(owner, *args, **kwargs)

        timed.section_name = name  # type: ignore[attr-defined]
        return timed

    return wrap


def time_table(m: dict, estimate_min: dict[str, float]) -> Markdown:
    """Measured minutes per section of a run (``m["section_time_s"]``) beside the profile's
    estimate (quiet 2-core CPU; a section the estimate does not name counts in the total)."""
    measured = m["section_time_s"]
    rows = [
        (name, f"{seconds / 60:.1f}", f"{estimate_min[name]:.1f}" if name in estimate_min else "")
        for name, seconds in measured.items()
    ]
    rows.append(
        ("all sections", f"{sum(measured.values()) / 60:.1f}", f"{sum(estimate_min.values()):.1f}")
    )
    return markdown_table(rows, ["section", "minutes (this run)", "estimate (quiet 2-core CPU)"])
