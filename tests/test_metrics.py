"""Metrics against values worked out by hand (see the comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mmlatch.metrics import format_table, mean_sd, regression_metrics, weighted_f1

PRED = [2.6, -0.4, 0.0, 1.2, 2.2, 0.4]
TRUTH = [3.0, -1.0, 0.0, 0.8, -1.6, -0.2]


def test_regression_metrics_by_hand():
    m = regression_metrics(PRED, TRUTH)
    # |errors| = .4 .6 0 .4 3.8 .6 -> 5.8 / 6
    assert m["mae"] == pytest.approx(5.8 / 6)
    # rounded (clip ±3): pred 3 -0 0 1 2 0, truth 3 -1 0 1 -2 -0 -> 4 of 6 agree; same with clip ±2
    assert m["acc7"] == pytest.approx(4 / 6)
    assert m["acc5"] == pytest.approx(4 / 6)
    # non-zero: drop truth 0 -> pred>0 T F T T T, truth>0 T F T F F -> 3/5
    assert m["acc2_nonzero"] == pytest.approx(0.6)
    # class T: tp 2 fp 2 fn 0 -> F1 2/3 (support 2); class F: tp 1 fp 0 fn 2 -> F1 1/2 (support 3)
    assert m["f1_nonzero"] == pytest.approx((2 * 2 / 3 + 3 * 0.5) / 5)
    # non-negative: pred>=0 T F T T T T, truth>=0 T F T T F F -> 4/6
    assert m["acc2_nonneg"] == pytest.approx(4 / 6)
    # class T: tp 3 fp 2 fn 0 -> F1 .75 (support 3); class F: tp 1 fp 0 fn 2 -> F1 .5 (support 3)
    assert m["f1_nonneg"] == pytest.approx(0.625)
    p, t = np.array(PRED), np.array(TRUTH)
    r = ((p - p.mean()) * (t - t.mean())).sum() / math.sqrt(((p - p.mean()) ** 2).sum() * ((t - t.mean()) ** 2).sum())
    assert m["corr"] == pytest.approx(r)


def test_edge_cases():
    assert math.isnan(regression_metrics([1.0, 1.0], [0.5, -2.0])["corr"])  # constant prediction
    assert math.isnan(regression_metrics([1.0], [0.0])["acc2_nonzero"])  # nothing non-zero to score
    assert weighted_f1(np.array([True, True]), np.array([False, False])) == 0.0
    with pytest.raises(ValueError):
        regression_metrics([1.0], [1.0, 2.0])
    assert mean_sd([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert mean_sd([4.0]) == (4.0, 0.0)


def test_format_table():
    text = format_table({"valid": regression_metrics(PRED, TRUTH), "test": {"mae": (0.5, 0.01), "acc7": (0.5, 0.02)}},
                        title="t")
    lines = text.splitlines()
    assert lines[0] == "t" and "valid" in lines[1] and "test" in lines[1]
    assert any(line.startswith("Acc7") and "66.7" in line and "50.0 ± 2.0" in line for line in lines)
    assert any(line.startswith("MAE") and "0.967" in line and "0.500 ± 0.010" in line for line in lines)
    assert any(line.startswith("Acc5") and line.rstrip().endswith("-") for line in lines)
