"""Check the MMLatch paper's claim on the real CMU-MOSEI (or MOSI) computational sequences.

    python bench/reproduce.py --csd DIR --folds cmu_mosei_std_folds.py [--seeds 5] [--work DIR]

DIR holds the SDK's Words, WordVectors (GloVe), COVAREP, Facet and Labels .csd files. The script
imports them into a feature store (skipped when ``--work`` already has one), trains MMLatch and
its late-fusion baseline (the same network without feedback) over the seeds with the reference
recipe, and prints their test metrics (mean ± sd) next to the published numbers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.errors import MmpipeError
from mmlatch.cmu import import_csd
from mmlatch.metrics import METRICS, format_table
from mmlatch.train import TrainConfig, train

# From ../shared/docs/mmlatch-reference.md: MulT (Tsai et al., ACL 2019), word-aligned, Acc2/F1 non-zero.
PUBLISHED = {
    "mosei": {"MulT (published)": {"acc7": 0.518, "acc2_nonzero": 0.825, "f1_nonzero": 0.823, "mae": 0.580, "corr": 0.703}},
    "mosi": {"MulT (published)": {"acc7": 0.400, "acc2_nonzero": 0.830, "f1_nonzero": 0.828, "mae": 0.871, "corr": 0.698}},
}
NOTE = (
    "MMLatch (ICASSP 2022) reports consistent gains over MulT and over its late-fusion baseline on\n"
    "CMU-MOSEI; leaderboards list its binary accuracy as 82.4 (variant not stated)."
)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--csd", type=Path, required=True, help="folder with the SDK .csd files")
    p.add_argument("--folds", type=Path, help="video folds (SDK std_folds .py, JSON or CSV video_id,split)")
    p.add_argument("--dataset", choices=("mosei", "mosi"), default="mosei")
    p.add_argument("--work", type=Path, default=Path("out/reproduce"), help="store, labels and checkpoints go here")
    p.add_argument("--seeds", type=int, default=5, help="number of seeds per model (0..N-1)")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--hidden", type=int, default=100)
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    features, labels = args.work / "features", args.work / "labels.csv"
    try:
        if labels.is_file() and features.is_dir():
            print(f"using the store already imported in {args.work}", file=sys.stderr)
        else:
            report = import_csd(args.csd, features, labels, args.dataset, args.folds)
            print(report.summary(), file=sys.stderr)
        columns, reports = {}, {}
        for name, feedback in (("MMLatch", True), ("late fusion", False)):
            cfg = TrainConfig(
                epochs=args.epochs, batch_size=args.batch_size, hidden=args.hidden, device=args.device,
                seeds=tuple(range(args.seeds)), feedback=feedback, quiet=args.quiet,
            )
            reports[name] = train(features, labels, args.work / name.replace(" ", "_"), cfg)
            columns[f"{name} (ours)"] = reports[name].summary.get("test", {})
    except MmpipeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    columns.update(PUBLISHED[args.dataset])
    gain = {
        m: reports["MMLatch"].summary["test"][m][0] - reports["late fusion"].summary["test"][m][0]
        for m in METRICS
        if "test" in reports["MMLatch"].summary and "test" in reports["late fusion"].summary
    }
    if gain:
        columns["MMLatch - baseline"] = gain
    n = args.seeds
    print(format_table(columns, title=f"CMU-{args.dataset.upper()} test split, {n} seed{'s' if n > 1 else ''} each (mean ± sd)"))
    print(NOTE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
