"""Training MMLatch on the feature store with the reference recipe, over several seeds.

Recipe (the authors' defaults): L1 loss, Adam 5e-4 without weight decay, batch 32, up to 100
epochs, early stopping after 10 epochs without a better validation L1, ReduceLROnPlateau (factor
0.5, patience 2, cooldown 2, min lr 2.5e-5), no gradient clipping, and the *best* validation
epoch is kept (the reference code's hand-off kept a later one). Each seed trains a fresh model;
the checkpoint is the best-validation model of the seed with the best validation L1, and the
report gives mean ± sd over seeds for every metric.

On CUDA the whole step runs on the GPU with fp16 autocast and a GradScaler: the features are
uploaded once and batches are gathered there. On the CPU runs are deterministic for a seed.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from core.errors import InputError
from mmlatch.checkpoint import save_checkpoint
from mmlatch.data import DeviceData, Normalisation, UtteranceData, bucket_batches, load_dataset
from mmlatch.inference import amp_dtype, autocast, predict, resolve_device
from mmlatch.metrics import METRICS, format_table, mean_sd, regression_metrics
from mmlatch.model import MMLatch, ModelConfig


@dataclass
class TrainConfig:
    epochs: int = 100
    batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 0.0
    patience: int = 10  # early stopping, in epochs without a better validation L1
    lr_factor: float = 0.5
    lr_patience: int = 2
    lr_cooldown: int = 2
    min_lr: float = 2.5e-5
    seeds: tuple[int, ...] = (0,)
    normalise: bool = False  # the reference feeds raw CMU features
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # mixed precision, CUDA only
    hidden: int = 100
    feedback: bool = True  # False: the late-fusion baseline
    mask: str = "lstm"  # lstm | linear
    mask_dropout_in_eval: bool = False
    lengths_as_max: bool = False
    eval_batch_size: int = 256
    quiet: bool = False
    # CPU intra-op threads (None: torch's default, one per core). On a busy machine 1 can be ~10x
    # faster than oversubscribed spinning threads.
    threads: int | None = None

    def model_config(self, dims: dict[str, int]) -> ModelConfig:
        return ModelConfig(
            text_dim=dims["text"], audio_dim=dims["audio"], vision_dim=dims["vision"], hidden=self.hidden,
            feedback=self.feedback, mask=self.mask, mask_dropout_in_eval=self.mask_dropout_in_eval,
            lengths_as_max=self.lengths_as_max,
        )


@dataclass
class EpochLog:
    seed: int
    epoch: int
    epochs: int
    train_l1: float
    valid_l1: float
    lr: float
    seconds: float
    samples_per_s: float
    best: bool

    def line(self) -> str:
        star = " *" if self.best else "  "
        return (
            f"seed {self.seed}  epoch {self.epoch:3d}/{self.epochs}  train L1 {self.train_l1:.4f}  "
            f"valid L1 {self.valid_l1:.4f}{star}  lr {self.lr:.1e}  {self.seconds:.1f} s  "
            f"({self.samples_per_s:.0f} utt/s)"
        )


@dataclass
class SeedResult:
    seed: int
    best_epoch: int
    epochs_run: int
    seconds: float
    valid: dict[str, float]
    test: dict[str, float] | None


@dataclass
class TrainReport:
    checkpoint: Path
    per_seed: list[SeedResult]
    summary: dict[str, dict[str, tuple[float, float]]]  # split -> metric -> (mean, sd)
    best_seed: int
    counts: dict[str, int] = field(default_factory=dict)  # utterances per split
    device: str = "cpu"

    def table(self) -> str:
        n = len(self.per_seed)
        title = (
            f"MMLatch, {n} seed{'s' if n > 1 else ''} (mean ± sd), "
            + ", ".join(f"{k} {v}" for k, v in self.counts.items())
            + f"; checkpoint: seed {self.best_seed} -> {self.checkpoint}"
        )
        return format_table(self.summary, title=title)


def default_progress(quiet: bool) -> Callable[[EpochLog], None]:
    if quiet:
        return lambda log: None
    return lambda log: print(log.line(), file=sys.stderr, flush=True)


def seed_everything(seed: int) -> np.random.Generator:
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return np.random.default_rng(seed)


def train_epoch(
    model: MMLatch,
    data: DeviceData,
    indices: np.ndarray,
    optimiser: torch.optim.Optimizer,
    batch_size: int,
    rng: np.random.Generator,
    amp: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> float:
    """One pass over ``indices`` in length-bucketed random batches; returns the mean train L1."""
    model.train()
    total = torch.zeros((), device=data.device)
    for chunk in bucket_batches(indices, data.data.lengths, batch_size, rng):
        batch = data.collate(chunk)
        with autocast(data.device, amp):
            pred = model(batch.text, batch.audio, batch.vision, batch.lengths)
        loss = F.l1_loss(pred.float(), batch.labels)
        optimiser.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimiser)
            scaler.update()
        else:
            loss.backward()
            optimiser.step()
        total += loss.detach() * len(chunk)
    return float(total) / max(len(indices), 1)  # one device sync per epoch


def evaluate_split(model: MMLatch, data: DeviceData, indices: np.ndarray, cfg: TrainConfig) -> dict[str, float]:
    preds = predict(model, data, indices, cfg.eval_batch_size, amp=cfg.amp).scores
    return regression_metrics(preds, data.data.labels[indices])


def fit_one_seed(
    seed: int,
    data: DeviceData,
    splits: dict[str, np.ndarray],
    model_config: ModelConfig,
    cfg: TrainConfig,
    progress: Callable[[EpochLog], None],
) -> tuple[SeedResult, dict[str, torch.Tensor]]:
    rng = seed_everything(seed)
    model = MMLatch(model_config).to(data.device)
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimiser, mode="min", factor=cfg.lr_factor, patience=cfg.lr_patience,
        cooldown=cfg.lr_cooldown, min_lr=cfg.min_lr,
    )
    dtype = amp_dtype(data.device, cfg.amp)
    scaler = torch.amp.GradScaler(data.device.type) if dtype == torch.float16 else None
    best_l1, best_epoch, best_state, stale = math.inf, 0, None, 0
    started = time.perf_counter()
    epoch = 0
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        train_l1 = train_epoch(model, data, splits["train"], optimiser, cfg.batch_size, rng, dtype, scaler)
        train_s = time.perf_counter() - t0
        valid_l1 = evaluate_split(model, data, splits["valid"], cfg)["mae"]
        scheduler.step(valid_l1)
        improved = valid_l1 < best_l1
        if improved:
            best_l1, best_epoch, stale = valid_l1, epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
        progress(EpochLog(
            seed, epoch, cfg.epochs, train_l1, valid_l1, optimiser.param_groups[0]["lr"],
            time.perf_counter() - t0, len(splits["train"]) / max(train_s, 1e-9), improved,
        ))
        if not math.isfinite(train_l1):
            raise InputError(f"training diverged (train L1 {train_l1}) at seed {seed}, epoch {epoch}; try --normalise")
        if stale >= cfg.patience:
            break
    assert best_state is not None
    model.load_state_dict(best_state)
    valid = evaluate_split(model, data, splits["valid"], cfg)
    test = evaluate_split(model, data, splits["test"], cfg) if len(splits["test"]) else None
    result = SeedResult(seed, best_epoch, epoch, time.perf_counter() - started, valid, test)
    return result, {k: v.to("cpu") for k, v in best_state.items()}


def summarise(results: list[SeedResult]) -> dict[str, dict[str, tuple[float, float]]]:
    summary = {"valid": {m: mean_sd([r.valid[m] for r in results]) for m in METRICS}}
    if all(r.test is not None for r in results):
        summary["test"] = {m: mean_sd([r.test[m] for r in results]) for m in METRICS}  # type: ignore[index]
    return summary


def json_safe(value):
    """NaN/inf -> None, tuples -> lists: the checkpoint JSON stays standard JSON."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def train(
    features: Path,
    labels: Path,
    out: Path,
    cfg: TrainConfig | None = None,
    progress: Callable[[EpochLog], None] | None = None,
) -> TrainReport:
    cfg = cfg or TrainConfig()
    if not cfg.seeds:
        raise InputError("at least one seed is needed")
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise InputError("epochs and batch size must be positive")
    progress = progress or default_progress(cfg.quiet)
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    raw: UtteranceData = load_dataset(features, labels)
    splits = {s: raw.split_indices(s) for s in ("train", "valid", "test")}
    norm = Normalisation.fit(raw, splits["train"]) if cfg.normalise else None
    data = raw.normalised(norm).on(device)
    model_config = cfg.model_config(raw.dims)

    results, best_state, best_seed = [], None, None
    for seed in cfg.seeds:
        result, state = fit_one_seed(seed, data, splits, model_config, cfg, progress)
        results.append(result)
        if best_seed is None or result.valid["mae"] < next(r for r in results if r.seed == best_seed).valid["mae"]:
            best_state, best_seed = state, seed
    summary = summarise(results)
    best = next(r for r in results if r.seed == best_seed)

    model = MMLatch(model_config)
    model.load_state_dict(best_state)
    counts = {s: int(len(i)) for s, i in splits.items()}
    training = json_safe({
        "features": str(features),
        "labels": str(labels),
        "videos": len(set(raw.video_ids)),
        "utterances": counts,
        "unmatched_labels": raw.unmatched_labels,
        "config": asdict(cfg),
        "seed": best_seed,
        "best_epoch": best.best_epoch,
        "epochs_run": best.epochs_run,
        "device": str(device),
        "amp": amp_dtype(device, cfg.amp) is not None,
        "per_seed": [asdict(r) for r in results],
    })
    metrics = json_safe({"valid": best.valid, "test": best.test, "summary": summary})
    path = save_checkpoint(out, model, model_config, raw.schema, norm, training, metrics)
    return TrainReport(Path(path), results, summary, int(best_seed), counts, str(device))
