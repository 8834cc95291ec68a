import json

import pytest

from course_lib import baseline, paths, profiles, results


def test_unknown_profile_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown profile 'fast'.*quick, full"):
        profiles.check_profile("fast")
    assert (
        baseline.baseline_settings("quick").train.epochs
        < baseline.baseline_settings("full").train.epochs
    )


def test_quick_runs_never_write_results(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "RESULTS_DIR", tmp_path)
    assert results.save_results("baseline", "quick", {"test_accuracy": 0.5}, 1.0, "cmd") is None
    assert list(tmp_path.iterdir()) == []


def test_full_results_carry_their_provenance(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "RESULTS_DIR", tmp_path)
    path = results.save_results("demo", "full", {"test_accuracy": 0.9}, 12.34, "course run x")
    record = json.loads(path.read_text())
    assert set(record) == {
        "profile",
        "command",
        "commit",
        "date",
        "wall_time_s",
        "machine",
        "metrics",
    }
    assert record["command"] == "course run x" and record["wall_time_s"] == 12.3
    assert {"cpu", "cores", "torch"} <= set(record["machine"])
    assert results.load_results("demo") == record
    assert results.load_results("missing") is None


SAVED_CHAPTERS = {"baseline", "pruning", "nas"}


def test_committed_results_follow_the_contract():
    saved = sorted(paths.RESULTS_DIR.glob("*.json"))
    assert SAVED_CHAPTERS <= {path.stem for path in saved}, saved
    for path in saved:
        record = json.loads(path.read_text())
        assert record["profile"] == "full", path
        assert {"command", "commit", "date", "wall_time_s", "machine", "metrics"} <= set(record), (
            path
        )


def test_atomic_path_leaves_the_old_file_on_error(tmp_path):
    target = tmp_path / "x.txt"
    target.write_text("old")
    try:
        with paths.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    except RuntimeError:
        pass
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]
    with paths.atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"
