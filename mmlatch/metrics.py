"""The standard CMU-MOSI/MOSEI sentiment metrics, without scikit-learn.

Conventions follow the evaluation scripts everyone compares against (MulT, MMLatch):
- Acc7 / Acc5: clip to [-3, 3] / [-2, 2], round with ``np.round`` (half to even), compare.
- Binary accuracy and weighted F1 in two variants, both reported because papers mix them:
  *non-zero* drops samples whose truth is exactly 0 and compares pred > 0 with truth > 0;
  *non-negative* keeps everything and compares pred >= 0 with truth >= 0.
- Weighted F1 as scikit-learn's ``average="weighted"``: per-class F1 weighted by the class's
  support in the truth; an undefined precision or recall counts as 0.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

METRICS = ("mae", "corr", "acc7", "acc5", "acc2_nonzero", "f1_nonzero", "acc2_nonneg", "f1_nonneg")
# Shown as percentages in tables; the dict values stay fractions in [0, 1].
PERCENT = {"acc7", "acc5", "acc2_nonzero", "f1_nonzero", "acc2_nonneg", "f1_nonneg"}
LABELS = {
    "mae": "MAE",
    "corr": "Corr",
    "acc7": "Acc7",
    "acc5": "Acc5",
    "acc2_nonzero": "Acc2 (non-zero)",
    "f1_nonzero": "F1 (non-zero)",
    "acc2_nonneg": "Acc2 (non-neg)",
    "f1_nonneg": "F1 (non-neg)",
}


def weighted_f1(truth: np.ndarray, pred: np.ndarray) -> float:
    """Support-weighted F1 over the classes present in truth or prediction (booleans or ints)."""
    truth, pred = np.asarray(truth), np.asarray(pred)
    if truth.size == 0:
        return float("nan")
    total = 0.0
    for c in np.union1d(truth, pred):
        tp = float(np.sum((pred == c) & (truth == c)))
        fp = float(np.sum((pred == c) & (truth != c)))
        fn = float(np.sum((pred != c) & (truth == c)))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        total += f1 * (tp + fn)  # support of c in the truth
    return total / truth.size


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r; NaN when either side is constant (r is undefined, not 0)."""
    a = np.asarray(a, np.float64) - np.mean(a)
    b = np.asarray(b, np.float64) - np.mean(b)
    denom = math.sqrt(float(np.sum(a * a)) * float(np.sum(b * b)))
    return float(np.sum(a * b) / denom) if denom > 0 else float("nan")


def regression_metrics(pred, truth) -> dict[str, float]:
    pred = np.asarray(pred, np.float64).reshape(-1)
    truth = np.asarray(truth, np.float64).reshape(-1)
    if pred.shape != truth.shape:
        raise ValueError(f"{pred.size} predictions for {truth.size} labels")
    if pred.size == 0:
        raise ValueError("no samples to evaluate")
    nonzero = truth != 0
    return {
        "mae": float(np.mean(np.abs(pred - truth))),
        "corr": pearson(pred, truth),
        "acc7": float(np.mean(np.round(np.clip(pred, -3, 3)) == np.round(np.clip(truth, -3, 3)))),
        "acc5": float(np.mean(np.round(np.clip(pred, -2, 2)) == np.round(np.clip(truth, -2, 2)))),
        "acc2_nonzero": float(np.mean((pred[nonzero] > 0) == (truth[nonzero] > 0))) if nonzero.any() else float("nan"),
        "f1_nonzero": weighted_f1(truth[nonzero] > 0, pred[nonzero] > 0) if nonzero.any() else float("nan"),
        "acc2_nonneg": float(np.mean((pred >= 0) == (truth >= 0))),
        "f1_nonneg": weighted_f1(truth >= 0, pred >= 0),
    }


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single run)."""
    arr = np.asarray(values, np.float64)
    if arr.size == 0:
        return float("nan"), float("nan")
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def format_value(metric: str, value) -> str:
    """0.8234 -> '82.3' for percentages, 3 decimals otherwise; (mean, sd) -> 'mean ± sd'."""
    if value is None:
        return "-"
    if isinstance(value, (tuple, list)):
        mean, sd = value
        return f"{format_value(metric, mean)} ± {format_value(metric, sd)}"
    value = float(value)
    if math.isnan(value):
        return "n/a"
    return f"{100 * value:.1f}" if metric in PERCENT else f"{value:.3f}"


def format_table(
    columns: Mapping[str, Mapping[str, float | tuple[float, float] | None]],
    metrics: Sequence[str] = METRICS,
    title: str | None = None,
) -> str:
    """Plain-text table, one row per metric and one column per entry of ``columns``.

    ``columns`` maps a heading (a split, a model, "published") to metric -> value, where a value
    is a fraction, a (mean, sd) pair, or missing. Accuracies and F1 print as percentages.
    """
    headings = list(columns)
    rows = [["metric", *headings]]
    for m in metrics:
        rows.append([LABELS.get(m, m), *[format_value(m, columns[h].get(m)) for h in headings]])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    if title:
        lines.append(title)
    for k, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
