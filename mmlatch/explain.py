"""Why a score: each word's contribution by leave-one-word-out occlusion, and what the
top-down masks damped (MMLatch's own mechanism), for the HTML report.

Contribution of word j = f(utterance) - f(utterance without word j), where "without" drops the
word's row from all three modalities and the model sees a sequence one word shorter (raw model
outputs, before clipping to [-3, 3]). All occluded variants of all utterances go through
``mmlatch.inference.predict`` as ordinary utterances, so they are batched, normalised and padded
exactly like the scores themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mmlatch.checkpoint import LoadedCheckpoint
from mmlatch.data import UtteranceData, read_feature_file
from mmlatch.inference import predict
from pipeline.schema import MODALITIES

TOP_FEATURES = 5  # most damped features listed per modality in the report
TOP_DAMPED = 5  # most damped feature names kept per modality in the score tables


def mask_summary(gates: dict[str, np.ndarray], names: dict[str, list[str]]) -> dict[str, Any]:
    """What the top-down masks did to one utterance: mean gate per modality, per word of text,
    and the most damped input features (lowest mean gate over the utterance's words)."""
    out: dict[str, Any] = {}
    for m in MODALITIES:
        g = gates[m]  # (len, d_m)
        out[f"mask_{m}"] = float(g.mean())
    out["mask_text_per_word"] = [float(v) for v in gates["text"].mean(axis=1)]
    for m in MODALITIES:
        per_feature = gates[m].mean(axis=0)
        order = np.argsort(per_feature, kind="stable")[:TOP_DAMPED]
        out[f"damped_{m}"] = [names[m][i] for i in order]
    return out


@dataclass
class UtteranceExplanation:
    contributions: list[float | None]  # per word: score minus score without the word
    damped: dict[str, float] = field(default_factory=dict)  # modality -> 1 - mean mask
    text_damped_per_word: list[float] = field(default_factory=list)
    top_damped: dict[str, list[tuple[str, float]]] = field(default_factory=dict)


def explain_files(
    checkpoint: LoadedCheckpoint, feature_files: Sequence[Path], batch_size: int = 256
) -> dict[tuple[str, int], UtteranceExplanation]:
    """Word contributions and top-down mask summaries for every utterance of the files."""
    data = UtteranceData.from_videos([read_feature_file(p) for p in feature_files])
    data = data.normalised(checkpoint.normalisation)
    with_masks = bool(checkpoint.config.feedback)
    # Full precision even on a GPU: contributions are small differences of two outputs.
    full = predict(checkpoint.model, data.on(checkpoint.device), batch_size=batch_size, amp=False,
                   with_masks=with_masks)

    # Occluded variants: utterance k without word j, for every k with at least two words.
    owner, position, rows = [], [], []
    for k, (offset, n) in enumerate(zip(data.offsets, data.lengths)):
        if n < 2:
            continue
        span = np.arange(offset, offset + n)
        for j in range(int(n)):
            owner.append(k)
            position.append(j)
            rows.append(np.delete(span, j))
    without = np.zeros(0, np.float32)
    if rows:
        flat_rows = np.concatenate(rows)
        lengths = np.asarray([len(r) for r in rows], np.int64)
        variants = UtteranceData(
            schema=data.schema,
            flat={m: data.flat[m][flat_rows] for m in MODALITIES},
            imputed={m: data.imputed[m][flat_rows] for m in MODALITIES},
            offsets=np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64),
            lengths=lengths,
            video_ids=[data.video_ids[k] for k in owner],
            utterance_ids=data.utterance_ids[owner],
            words=[[] for _ in owner],
            starts=data.starts[owner],
            ends=data.ends[owner],
            labels=np.full(len(owner), np.nan, np.float32),
            splits=np.full(len(owner), "", dtype=object).astype(str),
            normalisation=data.normalisation,
        )
        without = predict(checkpoint.model, variants.on(checkpoint.device), batch_size=batch_size, amp=False).scores

    names = {
        m: list(checkpoint.schema.modalities[m].names)
        or [f"{m}_{i}" for i in range(checkpoint.schema.modalities[m].dim)]
        for m in MODALITIES
    }
    out: dict[tuple[str, int], UtteranceExplanation] = {}
    for k in range(len(data)):
        out[(data.video_ids[k], int(data.utterance_ids[k]))] = UtteranceExplanation([None] * int(data.lengths[k]))
    for k, j, score in zip(owner, position, without):
        key = (data.video_ids[k], int(data.utterance_ids[k]))
        out[key].contributions[j] = float(full.scores[k] - score)
    if with_masks and full.masks is not None:
        for k in range(len(data)):
            gates = full.masks[k]
            if not gates:
                continue
            summary = mask_summary(gates, names)
            ex = out[(data.video_ids[k], int(data.utterance_ids[k]))]
            ex.damped = {m: 1.0 - summary[f"mask_{m}"] for m in MODALITIES}
            ex.text_damped_per_word = [1.0 - v for v in summary["mask_text_per_word"]]
            for m in MODALITIES:
                per_feature = 1.0 - gates[m].mean(axis=0)
                index = {name: i for i, name in enumerate(names[m])}
                ex.top_damped[m] = [(n, float(per_feature[index[n]])) for n in summary[f"damped_{m}"][:TOP_FEATURES]]
    return out
