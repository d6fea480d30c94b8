"""Across seeds: an interval over training runs whose coverage is checked, and the report's seed table."""
import numpy as np
import pandas as pd
import pytest


@pytest.mark.parametrize("n", [3, 5])
def test_the_interval_over_seeds_covers_the_mean_at_its_level(n):
    from irrepprobe.metrics import t_interval

    rng = np.random.default_rng(n)
    hits = [lo <= 0.3 <= hi for lo, hi in (t_interval(rng.normal(0.3, 0.1, n))[1:] for _ in range(4000))]
    assert 0.935 <= np.mean(hits) <= 0.965  # 95% nominal; 4,000 runs: standard error 0.35%


def test_spread_ratio_is_the_seeds_deviation_over_the_within_model_error():
    from irrepprobe.errors import IrrepprobeError
    from irrepprobe.metrics import across_seeds

    def table(v, half):
        return pd.DataFrame({"point": ["layers.0", "all"], "block": ["1o", "l=1"], "intervention": "zero",
                             "quantity": "energy", "scale_free": v, "scale_free_low": np.subtract(v, half),
                             "scale_free_high": np.add(v, half)})
    spread = across_seeds([table([0.2, 0.5], 1.96 * 0.01), table([0.4, 0.5], 0.1), table([0.3, 0.5], 0.1)])
    first = spread.iloc[0]
    assert first["seeds"] == 3 and first["mean"] == pytest.approx(0.3) and first["sd"] == pytest.approx(0.1)
    assert first["spread_ratio"] == pytest.approx(10.0, rel=1e-3)  # sd 0.1 over a within-model standard error of 0.01
    assert spread.iloc[1]["sd"] == 0
    with pytest.raises(IrrepprobeError, match="not the same architecture"):
        across_seeds([table([0.2, 0.5], 0.01), table([0.2, 0.5], 0.01).iloc[:1]])


def test_report_sets_the_spread_across_seeds_beside_the_within_model_intervals(tmp_path):
    """The shipped example captured twice: two "seeds" that are one model, so the spread is exactly zero."""
    from irrepprobe.capture import capture_checkpoint
    from irrepprobe.examples import example_checkpoint
    from irrepprobe.study import make_report

    caps = [capture_checkpoint(example_checkpoint(), subset=40, out=tmp_path / f"cap{k}", device="cpu") for k in (0, 1)]
    rep = make_report(caps[0], out=tmp_path / "r", device="cpu", controls=1, map_method="pca",
                      seeds=[str(caps[1].path)], log=lambda *a: None)
    spread = pd.read_csv(tmp_path / "r" / "tables" / "seeds.csv")
    util = rep["tables"]["utilisation"]
    assert len(spread) == len(util.drop_duplicates(["point", "block", "intervention", "quantity"]))
    assert list(spread.columns[4:6]) == ["this model", "cap1"]
    measured = spread[np.isfinite(spread["this model"])]
    assert len(measured) > 10 and (measured["seeds"] == 2).all()
    assert np.allclose(measured["this model"], measured["cap1"]) and np.allclose(measured["sd"], 0)
    assert "Across seeds" in (tmp_path / "r" / "report.md").read_text()
