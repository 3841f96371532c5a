"""Training and scoring throughput of MMLatch at CMU-MOSEI size (synthetic data, real code path).

    python bench/train.py                          # 16k utterances, 300/74/35, every device found
    python bench/train.py --utterances 2000 --train-steps 30 --device cpu   # a quick CPU run

Training: utterances/s of ``train.train_epoch`` (batch 32, length-bucketed, the whole step on the
device; fp16 autocast + GradScaler on CUDA) and the implied time of one epoch over 16k
utterances. Scoring: utterances/s of ``inference.predict`` (eval mode, length-sorted batches).
Lengths follow a CMU-MOSEI-like log-normal (median ~20 words, up to 150).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the synthetic data lives with the tests

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mmlatch.inference import amp_dtype, predict, resolve_device  # noqa: E402
from mmlatch.model import MMLatch, ModelConfig, count_parameters  # noqa: E402
from mmlatch.train import train_epoch  # noqa: E402
from tests.synthetic import CMU_DIMS, synthetic_dataset  # noqa: E402

MOSEI_TRAIN_UTTERANCES = 16_326


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_device(data, device: torch.device, feedback: bool, args) -> dict:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    dev = data.on(device)
    model = MMLatch(ModelConfig(**{f"{m}_dim": d for m, d in data.dims.items()}, feedback=feedback)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=5e-4)
    dtype = amp_dtype(device, not args.no_amp)
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    all_idx = np.arange(len(data))
    n_train = min(len(all_idx), args.train_steps * args.batch_size) if args.train_steps else len(all_idx)
    warm = rng.choice(all_idx, size=min(len(all_idx), 3 * args.batch_size), replace=False)
    train_epoch(model, dev, warm, opt, args.batch_size, rng, dtype, scaler)  # warm-up (cuDNN plans, allocator)
    subset = rng.choice(all_idx, size=n_train, replace=False)
    sync(device)
    t0 = time.perf_counter()
    train_epoch(model, dev, subset, opt, args.batch_size, rng, dtype, scaler)
    sync(device)
    train_rate = n_train / (time.perf_counter() - t0)

    n_score = min(len(all_idx), args.score_utterances) if args.score_utterances else len(all_idx)
    predict(model, dev, all_idx[: min(n_score, args.score_batch)], args.score_batch, amp=not args.no_amp)  # warm-up
    sync(device)
    t0 = time.perf_counter()
    predict(model, dev, all_idx[:n_score], args.score_batch, amp=not args.no_amp)
    sync(device)
    score_rate = n_score / (time.perf_counter() - t0)
    return {
        "device": str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        "model": "MMLatch" if feedback else "late fusion",
        "params": count_parameters(model),
        "amp": str(dtype).replace("torch.", "") if dtype else "fp32",
        "train utt/s": train_rate,
        "epoch 16k (s)": MOSEI_TRAIN_UTTERANCES / train_rate,
        "score utt/s": score_rate,
        "timed train/score": f"{n_train}/{n_score}",
    }


def print_table(rows: list[dict]) -> None:
    cols = list(rows[0])
    cells = [[c for c in cols]] + [
        [f"{r[c]:.0f}" if isinstance(r[c], float) and r[c] >= 100 else f"{r[c]:.2f}" if isinstance(r[c], float)
         else str(r[c]) for c in cols] for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    for k, row in enumerate(cells):
        print("  ".join(v.rjust(w) for v, w in zip(row, widths)))
        if k == 0:
            print("  ".join("-" * w for w in widths))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--utterances", type=int, default=16_000, help="synthetic utterances (MOSEI train: ~16k)")
    p.add_argument("--device", nargs="+", default=None, help="devices to time (default: cpu, plus cuda if present)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--train-steps", type=int, default=0, help="time only this many training batches (0 = one epoch)")
    p.add_argument("--score-batch", type=int, default=1024)
    p.add_argument("--score-utterances", type=int, default=0, help="score only this many (0 = all)")
    p.add_argument("--no-feedback-too", action="store_true", help="also time the late-fusion baseline")
    p.add_argument("--no-amp", action="store_true")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    t0 = time.perf_counter()
    data = synthetic_dataset(args.utterances, CMU_DIMS, seed=0)
    print(f"{len(data)} utterances, {int(data.lengths.sum())} words (mean {data.lengths.mean():.1f}, "
          f"max {data.lengths.max()}), built in {time.perf_counter() - t0:.1f} s; torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} CPU threads", file=sys.stderr)
    rows = []
    for name in devices:
        device = resolve_device(name)
        for feedback in (True, False) if args.no_feedback_too else (True,):
            rows.append(bench_device(data, device, feedback, args))
            print(f"done: {rows[-1]['device']} {rows[-1]['model']}", file=sys.stderr)
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
