"""Numbers as the chapters print them: every table cell and sentence that shows a percent, a
speed-up or a latency goes through one function here, so the same metric reads the same in
every chapter.

A module of its own rather than :mod:`course_lib.report`: these are plain ``str`` functions
with no dependency, so :mod:`course_lib.measure` (which formats its own :class:`Latency` and
:class:`Ratio`) can use them without importing IPython; :mod:`course_lib.report` builds the
Markdown tables from them.

Units: accuracies and other shares are fractions in, percent out (without the ``%`` sign,
which the header or the sentence carries); latencies are milliseconds (``*_ms`` keys);
speed-ups are ratios of medians. Results saved in older layouts are read by
:mod:`course_lib.legacy`.
"""

from __future__ import annotations

from .legacy import ratio_parts

NO_INTERVAL = "no interval: saved before the interleaved protocol"
"""How a saved latency or speed-up without an interval (written before
:func:`course_lib.measure.compare` existed: one measurement, minutes apart from its
baseline) is labelled, beside the number."""

MEDIANS_ONLY = "saved before latencies carried intervals: medians only, one measurement each"
"""How a whole results file saved before intervals is described once, in the note above its
tables (chapter 4), whose cells then show medians without a label."""


def fmt(value: object, digits: int = 3) -> str:
    """A table cell: ints with thousands separators, floats to ``digits`` significant digits
    (no decimals from ``10**digits`` on), ``None`` as ``"-"``, anything else as ``str``."""
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 10**digits else f"{value:.{digits}g}"
    if isinstance(value, int):
        return f"{value:,}"
    return "-" if value is None else str(value)


def pct(fraction: float | None, digits: int = 2, sd: float | None = None) -> str:
    """A fraction in percent with ``digits`` decimals: ``pct(0.9123) == "91.23"``; with a
    standard deviation (a fraction too, omitted when ``None`` or 0) ``"91.23 ± 0.40"``;
    ``"-"`` for ``None``."""
    if fraction is None:
        return "-"
    text = f"{100 * fraction:.{digits}f}"
    return text if not sd else f"{text} ± {100 * sd:.{digits}f}"


def ratio_text(
    saved: dict | float | None, digits: int = 2, no_interval: str | None = NO_INTERVAL
) -> str:
    """A speed-up with its 95 % interval, ``digits`` decimals: ``"2.10x (1.90-2.30)"``.

    ``saved``: a :meth:`~course_lib.measure.Ratio.as_dict` (``{"median", "interval"}``).
    Saved without an interval (a bare float, or ``interval`` empty): ``"2.10x (<no_interval>)"``,
    or ``"2.10x"`` when ``no_interval`` is ``None``. ``None`` or no median: ``"-"``."""
    if saved is None or (isinstance(saved, dict) and saved.get("median") is None):
        return "-"
    median, low, high = ratio_parts(saved)
    if low is None:
        return f"{median:.{digits}f}x" + ("" if no_interval is None else f" ({no_interval})")
    return f"{median:.{digits}f}x ({low:.{digits}f}-{high:.{digits}f})"


def latency_text(saved: dict | None, no_interval: str | None = NO_INTERVAL) -> str:
    """A latency in ms, 3 significant digits, with its 95 % interval: ``"0.44 ms (0.43-0.45)"``.

    ``saved``: a :meth:`~course_lib.measure.Latency.as_dict` (``median_ms``, ``low_ms``,
    ``high_ms``). Saved without an interval (no ``low_ms``, or ``None``):
    ``"0.44 ms (<no_interval>)"``, or ``"0.44 ms"`` when ``no_interval`` is ``None``. ``None``
    or no median: ``"-"``."""
    if not saved or saved.get("median_ms") is None:
        return "-"
    median = f"{saved['median_ms']:.3g} ms"
    if saved.get("low_ms") is None:
        return median + ("" if no_interval is None else f" ({no_interval})")
    return f"{median} ({saved['low_ms']:.3g}-{saved['high_ms']:.3g})"


def latency_us_text(saved: dict) -> str:
    """A short latency (``saved`` in ms, as :func:`latency_text`) in microseconds, one
    decimal, with its interval: ``"12.3 µs (11.9-13.0)"``."""
    low, high = 1e3 * saved["low_ms"], 1e3 * saved["high_ms"]
    return f"{1e3 * saved['median_ms']:.1f} µs ({low:.1f}-{high:.1f})"
