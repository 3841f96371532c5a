"""Running a model over utterances: device choice, mixed precision, batched prediction.

Training (validation passes), ``evaluate`` and ``score`` all predict through ``predict`` so that
the three can never disagree on how an utterance is batched, padded or normalised.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch

from core.errors import MmpipeError
from mmlatch.data import DeviceData, sorted_batches
from mmlatch.model import MMLatch


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """None or "auto": the GPU when there is one, else the CPU."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MmpipeError(f"device {device} requested but no CUDA GPU is available")
    return dev


def amp_dtype(device: torch.device, enabled: bool = True) -> torch.dtype | None:
    """fp16 autocast on CUDA (cuDNN's LSTMs autocast to it; training pairs it with a GradScaler)."""
    if not enabled or device.type != "cuda":
        return None
    return torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@dataclass
class Predictions:
    scores: np.ndarray  # (N,) float32, in the order of the requested indices
    # with_masks: per utterance {modality: (len, d_m) float32} gates the model applied
    masks: list[dict[str, np.ndarray]] | None = None


@torch.no_grad()
def predict(
    model: MMLatch,
    data: DeviceData,
    indices: np.ndarray | None = None,
    batch_size: int = 256,
    amp: bool = True,
    with_masks: bool = False,
) -> Predictions:
    """Predict utterances ``indices`` (all by default) in length-sorted batches; eval mode."""
    was_training = model.training
    model.eval()
    if indices is None:
        indices = np.arange(len(data.data))
    indices = np.asarray(indices, np.int64)
    position = {int(u): k for k, u in enumerate(indices)}
    out = torch.empty(len(indices), dtype=torch.float32, device=data.device)
    masks: list[dict[str, np.ndarray]] | None = [{} for _ in indices] if with_masks else None
    dtype = amp_dtype(data.device, amp)
    try:
        for chunk in sorted_batches(indices, data.data.lengths, batch_size):
            batch = data.collate(chunk)
            where = torch.as_tensor([position[int(u)] for u in chunk], device=data.device)
            with autocast(data.device, dtype):
                if with_masks:
                    pred, gates = model(batch.text, batch.audio, batch.vision, batch.lengths, return_masks=True)
                else:
                    pred = model(batch.text, batch.audio, batch.vision, batch.lengths)
            out[where] = pred.float()
            if masks is not None:
                gates_cpu = {m: g.float().cpu().numpy() for m, g in gates.items()}
                for row, u in enumerate(chunk):
                    n = int(batch.lengths[row])
                    masks[position[int(u)]] = {m: g[row, :n] for m, g in gates_cpu.items()}
    finally:
        model.train(was_training)
    return Predictions(out.cpu().numpy(), masks)
