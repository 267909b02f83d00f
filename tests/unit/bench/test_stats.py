"""bench.stats: the percentiles every latency benchmark reports."""

from bench.stats import percentile, summary


def test_percentiles_are_measured_values_by_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == 51.0  # rank round(0.5 * 99) = 50 (0-based)
    assert percentile(values, 99) == 99.0
    assert percentile(values, 0) == 1.0 and percentile(values, 100) == 100.0
    assert percentile([7.0], 99) == 7.0


def test_summary_shape_and_nothing_measured() -> None:
    assert summary([]) == {"n": 0}
    got = summary([10.0, 20.0, 30.0, 40.0])
    assert got["n"] == 4 and got["max_ms"] == 40.0 and got["mean_ms"] == 25.0
    assert got["p50_ms"] in (20.0, 30.0) and got["p99_ms"] == 40.0
