"""The one chapter runner: settings per profile, section times, the cache, saving."""

import json

import pytest

from course_lib import chapter, paths, results
from course_lib.baseline import baseline_settings


def quick_run(profile: str = "quick") -> chapter.Run:
    return chapter.start("baseline", "notebooks/01_baseline.ipynb", profile, 3, baseline_settings)


def test_start_takes_the_profile_settings_and_refuses_an_unknown_profile():
    run = quick_run()
    assert run.settings == baseline_settings("quick")
    assert run.seed == 3 and run.estimate_min == baseline_settings("quick").estimate_min
    with pytest.raises(ValueError, match="unknown profile 'fast'.*quick, full"):
        quick_run("fast")


def test_sections_are_timed_even_when_they_raise_and_add_up():
    run = quick_run()
    with run.section("a"):
        pass
    with pytest.raises(KeyError), run.section("b"):
        raise KeyError("x")
    first = run.section_time_s["a"]
    with run.section("a"):
        sum(range(10_000))
    assert set(run.section_time_s) == {"a", "b"}
    assert run.section_time_s["a"] > first  # a section entered twice counts both


def test_the_section_decorator_finds_the_run_on_its_owner():
    class Owner:
        def __init__(self, run: chapter.Run) -> None:
            self.run = run

        @chapter.section("work")
        def work(self, x: int) -> int:
            return 2 * x

    owner = Owner(quick_run())
    assert owner.work(4) == 8
    assert list(owner.run.section_time_s) == ["work"]


def test_only_a_full_run_has_a_cache():
    assert quick_run().cache("x.pt") is None
    full = quick_run("full")
    assert full.cache("x.pt") == paths.RUNS_DIR / "full" / "baseline_cache" / "x.pt"


def test_finish_keeps_the_dict_and_leaves_it_in_its_saved_form(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "RESULTS_DIR", tmp_path)
    monkeypatch.delenv(results.COMMAND_ENV, raising=False)  # as outside `course run`
    run = quick_run()
    metrics = run.metrics
    metrics["widths"] = (3, 4)  # a tuple is saved as a list
    with run.section("s"):
        pass
    assert run.finish({"headline": 1}) is None  # quick runs never write results
    assert metrics is run.metrics and metrics["widths"] == [3, 4] and metrics["headline"] == 1
    assert set(metrics["section_time_s"]) == {"s"}
    assert list(tmp_path.iterdir()) == []

    full = quick_run("full")
    full.metrics["accuracy"] = 0.5
    saved = full.finish()
    record = json.loads(saved.read_text())
    assert saved == tmp_path / "baseline.json"
    assert record["metrics"] == full.metrics and record["profile"] == "full"
    assert record["command"].endswith("notebooks/01_baseline.ipynb --profile full")
    assert record["wall_time_s"] >= 0 and record["machine"]["cores"]


def test_a_full_run_records_the_commit_it_started_from(tmp_path, monkeypatch):
    # the run rewrites its own tracked checkpoints before it saves: the record must name
    # the code it started from, not the "-dirty" tree it leaves
    monkeypatch.setattr(paths, "RESULTS_DIR", tmp_path)
    monkeypatch.setattr(results, "git_commit", lambda: "abc123")
    full = quick_run("full")
    monkeypatch.setattr(results, "git_commit", lambda: "abc123-dirty")
    record = json.loads(full.finish().read_text())
    assert record["commit"] == "abc123"
    assert quick_run().commit is None  # a quick run asks git nothing


def test_time_table_puts_each_section_beside_its_estimate():
    table = chapter.time_table({"section_time_s": {"a": 60.0, "b": 30.0}}, {"a": 2.0}).data
    assert "| a | 1.0 | 2.0 |" in table and "| b | 0.5 |  |" in table
    assert "| all sections | 1.5 | 2.0 |" in table


def test_every_chapter_notebook_runs_through_the_one_runner():
    """Each notebook starts a chapter.Run (directly or through its package's run object)
    and none saves its results by hand, so provenance and section times are kept alike."""
    import inspect

    from course_lib.cli import chapter_notebooks
    from course_lib.nas.experiments import ChapterRun
    from course_lib.prune import experiment

    for owner in (ChapterRun, experiment.setup):
        assert "chapter.start(" in inspect.getsource(owner)
    starts = ("chapter.start(", "experiment.setup(", "ChapterRun(")
    for notebook in chapter_notebooks():
        code = "".join(
            "".join(c["source"])
            for c in json.loads(notebook.read_text())["cells"]
            if c["cell_type"] == "code"
        )
        assert any(s in code for s in starts), f"{notebook.name} does not start a chapter.Run"
        assert "save_results(" not in code, f"{notebook.name} saves its results by hand"
        assert ".finish(" in code or ".save()" in code, f"{notebook.name} never saves its run"
