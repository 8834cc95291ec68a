import json

import pytest

from course_lib import profiles, results


def test_unknown_profile_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown profile 'fast'.*quick, full"):
        profiles.check_profile("fast")
    assert (
        profiles.baseline_settings("quick").train.epochs
        < profiles.baseline_settings("full").train.epochs
    )


def test_quick_runs_never_write_results(tmp_path, monkeypatch):
    monkeypatch.setattr(results, "RESULTS_DIR", tmp_path)
    assert results.save_results("baseline", "quick", {"test_accuracy": 0.5}, 1.0, "cmd") is None
    assert list(tmp_path.iterdir()) == []


def test_full_results_carry_their_provenance(tmp_path, monkeypatch):
    monkeypatch.setattr(results, "RESULTS_DIR", tmp_path)
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


def test_committed_results_follow_the_contract():
    for path in results.RESULTS_DIR.glob("*.json"):
        record = json.loads(path.read_text())
        assert record["profile"] == "full", path
        assert {"command", "commit", "date", "wall_time_s", "machine", "metrics"} <= set(record), (
            path
        )
