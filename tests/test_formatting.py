"""The shared formatters (course_lib.formatting) and the readers of results saved in older
layouts (course_lib.legacy)."""

from __future__ import annotations

from course_lib import formatting, legacy, measure
from course_lib.formatting import NO_INTERVAL, latency_text, latency_us_text, pct, ratio_text


def test_pct_takes_fractions_and_shows_percent():
    assert pct(0.91234) == "91.23"
    assert pct(0.91234, 1) == "91.2" and pct(0.5, 0) == "50"
    assert pct(None) == "-"
    assert pct(0.8, sd=0.004) == "80.00 ± 0.40"
    assert pct(0.8, sd=0.0) == pct(0.8, sd=None) == "80.00", "no spread shown for sd 0"


def test_saved_speedups_are_read_in_both_formats():
    assert ratio_text({"median": 2.1, "interval": [1.9, 2.3]}) == "2.10x (1.90-2.30)"
    assert ratio_text({"median": 12.34, "interval": [11.0, 13.5]}, 1) == "12.3x (11.0-13.5)"
    assert ratio_text(2.68) == f"2.68x ({NO_INTERVAL})"
    assert ratio_text({"median": 2.68, "interval": None}) == f"2.68x ({NO_INTERVAL})"
    assert ratio_text({"median": 2.68, "interval": None}, no_interval=None) == "2.68x"
    assert ratio_text(None) == ratio_text({"median": None}) == "-"
    assert legacy.ratio_parts(2.68) == (2.68, None, None)
    assert legacy.ratio_parts({"median": 2.1, "interval": [1.9, 2.3]}) == (2.1, 1.9, 2.3)


def test_saved_latencies_are_read_in_both_formats():
    new = {"median_ms": 0.44, "low_ms": 0.43, "high_ms": 0.45}
    assert latency_text(new) == "0.44 ms (0.43-0.45)"
    assert latency_text({"median_ms": 0.44}) == f"0.44 ms ({NO_INTERVAL})"
    assert latency_text({"median_ms": 0.44, "low_ms": None}, no_interval=None) == "0.44 ms"
    assert latency_text(None) == latency_text({"median_ms": None}) == "-"
    assert latency_us_text({"median_ms": 0.0123, "low_ms": 0.0119, "high_ms": 0.013}) == (
        "12.3 µs (11.9-13.0)"
    )


def test_measured_latencies_and_ratios_print_like_saved_ones():
    lat = measure.Latency(0.44, 0.43, 0.45, 0.42, 0.46, "onnx", 1, 1, 5, 10, 2)
    assert str(lat) == latency_text(lat.as_dict()) == "0.44 ms (0.43-0.45)"
    r = measure.Ratio(2.1, 1.9, 2.3)
    assert str(r) == ratio_text(r.as_dict()) == "2.10x (1.90-2.30)"


def test_table_cells():
    assert formatting.fmt(1234567) == "1,234,567"
    assert formatting.fmt(0.123456) == "0.123" and formatting.fmt(12345.6) == "12,346"
    assert formatting.fmt(None) == "-" and formatting.fmt("x") == "x"


def test_old_chapter_layouts_are_read_in_the_current_one():
    assert legacy.baseline_onnx_b1({"latency_ms": {"onnx_b1": 1}}) == 1
    assert legacy.baseline_onnx_b1({"latency_ms": {"onnxruntime_b1": 2}}) == 2
    old = {
        "sync_configs": {
            "all": {"latency_median_ms": 0.5, "parallel_speedup": 1.3, "accuracy_mean": 0.7}
        },
        "beta_sweep": [{"structure": "s", "architecture": {}, "parallel_speedup": 1.1}],
        "parallel_speedup_b1": 1.2,
    }
    m = legacy.nas_metrics(old)
    assert m["legacy"] is True and "latency_ms" not in old["sync_configs"]["all"], "a copy"
    assert m["sync_configs"]["all"]["latency_ms"]["onnx"] == {
        "median_ms": 0.5,
        "low_ms": None,
        "high_ms": None,
    }
    assert m["sync_configs"]["all"]["parallel_speedup"] == {"median": 1.3, "interval": None}
    assert m["beta_sweep"][0]["searches"][0]["seed"] == 0
    assert m["parallel_speedup_b1_interval"] is None and m["retrain"] == "from_scratch"
    assert legacy.nas_metrics({"sync_configs": {"all": {"latency_ms": {}}}})["legacy"] is False
