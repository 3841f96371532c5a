"""``mmpipe train``, ``mmpipe evaluate`` and ``mmpipe import-cmu``: the model side's commands.

The handlers import the model side when they run: it pulls in torch (~1.5 s), which neither
``mmpipe --help`` nor the extraction commands need.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mmlatch.cmu import import_csd, import_pickle


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train MMLatch on a feature store and a labels table",
                              description="Train MMLatch with the reference recipe; one model per seed, "
                                          "the best-validation one is saved as the checkpoint.")
    p.add_argument("--features", type=Path, required=True, help="feature store folder (or one .parquet)")
    p.add_argument("--labels", type=Path, required=True, help="CSV/Parquet: video_id, utterance_id, score, split")
    p.add_argument("--out", type=Path, required=True, help="checkpoint folder to write")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run per seed (default: 0)")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--patience", type=int, default=10, help="early stopping patience in epochs")
    p.add_argument("--hidden", type=int, default=100)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--no-amp", action="store_true", help="full precision on CUDA")
    p.add_argument("--no-feedback", action="store_true", help="the late-fusion baseline (no top-down masks)")
    p.add_argument("--mask", choices=("lstm", "linear"), default="lstm", help="mask generator kind")
    p.add_argument("--normalise", action="store_true", help="standardise features with training-split statistics")
    p.add_argument("--quirk-mask-dropout-in-eval", action="store_true",
                   help="reproduce the reference code: mask dropout also at inference")
    p.add_argument("--quirk-lengths-as-max", action="store_true",
                   help="reproduce the reference code: every length = the padded maximum")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: one per core)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch progress lines")
    p.set_defaults(func=run_train)

    p = subparsers.add_parser("evaluate", help="metric table of a checkpoint on one split")
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--features", type=Path, required=True)
    p.add_argument("--labels", type=Path, required=True)
    p.add_argument("--split", default="test", choices=("train", "valid", "test"))
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=run_evaluate)

    p = subparsers.add_parser("import-cmu", help="import CMU-MOSI/MOSEI .csd sequences or aligned pickles",
                              description="Convert CMU-MultimodalSDK computational sequences or the aligned "
                                          "pickles into the mmpipe feature store plus a labels table.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--csd", type=Path, help="folder with the Words, WordVectors, COVAREP, Facet and Labels .csd")
    src.add_argument("--pickle", type=Path, help="aligned pickle {train,valid,test: {text,audio,vision,labels}}")
    p.add_argument("--out", type=Path, required=True, help="feature store folder to write")
    p.add_argument("--labels-out", type=Path, required=True, help="labels table to write (.csv or .parquet)")
    p.add_argument("--dataset", choices=("mosi", "mosei"), default="mosei")
    p.add_argument("--folds", type=Path, help="video folds for --csd: CSV (video_id,split), JSON or the SDK's "
                                              "cmu_mosei_std_folds.py")
    p.set_defaults(func=run_import)


def run_train(args: argparse.Namespace) -> int:
    from mmlatch.train import TrainConfig, train  # deferred: torch

    cfg = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, patience=args.patience,
        seeds=tuple(args.seeds), normalise=args.normalise, device=args.device, amp=not args.no_amp,
        hidden=args.hidden, feedback=not args.no_feedback, mask=args.mask,
        mask_dropout_in_eval=args.quirk_mask_dropout_in_eval, lengths_as_max=args.quirk_lengths_as_max,
        quiet=args.quiet, threads=args.threads,
    )
    report = train(args.features, args.labels, args.out, cfg)
    print(report.table())
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from mmlatch.evaluate import evaluate, evaluation_table  # deferred: torch

    metrics = evaluate(args.checkpoint, args.features, args.labels, args.split, args.batch_size, args.device)
    print(evaluation_table(metrics, args.split, title=f"{args.checkpoint} on {args.features}"))
    return 0


def run_import(args: argparse.Namespace) -> int:

    def progress(done: int, total: int) -> None:
        if sys.stderr.isatty() and (done == total or done % 50 == 0):
            print(f"\rimported {done}/{total} videos", end="\n" if done == total else "", file=sys.stderr, flush=True)

    if args.csd is not None:
        report = import_csd(args.csd, args.out, args.labels_out, args.dataset, args.folds, progress)
    else:
        report = import_pickle(args.pickle, args.out, args.labels_out, args.dataset, progress)
    print(report.summary())
    return 0
