"""MMLatch (Paraskevopoulos et al., ICASSP 2022) in one readable file.

Shapes: B = batch, T = words (padded), D = hidden size, d_m = input size of modality m.

    text (B,T,d_t)  audio (B,T,d_a)  vision (B,T,d_v)        lengths (B,)
        │              │                │
        ├── pass 1: Encoder_m (BiLSTM, sum directions, self-attention) -> h_m (B,T,D)
        │
        ├── top-down masks: m_x = 0.5 * (σ(G_xy(h_y)) + σ(G_xz(h_z)))   (B,T,d_x), x' = x * m_x
        │
        ├── pass 2: the SAME encoders on x' -> h'_t, h'_a, h'_v (B,T,D)
        │
        ├── cross-modal fuser -> [h'_t, h'_a, h'_v, TA, TV, AV, TAV] (B,T,7D)
        ├── pool: BiLSTM 7D -> 2D, self-attention, sum over the true words -> (B,2D)
        └── head: Linear(2D -> 1) -> (B,)

With ``feedback=False`` it is the late-fusion baseline: a single pass, no mask generators.

Padding never influences a prediction (true lengths everywhere: packed LSTMs, key padding masks in
every attention, pooling sums only real words), so an utterance scores the same alone or in a
batch of longer ones. Two quirks of the authors' code are available as switches, off by default:
``mask_dropout_in_eval`` (their mask dropout also runs at inference, so predictions vary from run
to run) and ``lengths_as_max`` (their batches set every length to the padded maximum, so padding
is encoded, attended to and pooled).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

MODALITIES = ("text", "audio", "vision")
MASK_KINDS = ("lstm", "linear")


@dataclass
class ModelConfig:
    text_dim: int = 300
    audio_dim: int = 74
    vision_dim: int = 35
    hidden: int = 100
    encoder_dropout: float = 0.2  # unimodal LSTM outputs and their attention weights
    mask_generator_dropout: float = 0.1  # outputs of the top-down LSTMs G
    mask_dropout: float = 0.2  # on the mask itself, training only (unless the quirk is on)
    fuser_dropout: float = 0.1  # cross-modal attention weights
    pool_dropout: float = 0.1  # pooling LSTM outputs and its attention weights
    feedback: bool = True  # False: the late-fusion baseline
    mask: str = "lstm"  # "lstm": sequence mask generators; "linear": per-time-step Linear D -> d_x
    # Quirks of the reference code, kept only to reproduce it:
    mask_dropout_in_eval: bool = False
    lengths_as_max: bool = False

    def __post_init__(self) -> None:
        if self.mask not in MASK_KINDS:
            raise ValueError(f"mask must be one of {MASK_KINDS}, got {self.mask!r}")
        for name in ("text_dim", "audio_dim", "vision_dim", "hidden"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    @property
    def dims(self) -> dict[str, int]:
        return {"text": self.text_dim, "audio": self.audio_dim, "vision": self.vision_dim}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model setting(s): {', '.join(sorted(unknown))}")
        return cls(**data)


def padding_mask(lengths: torch.Tensor, t: int, device: torch.device) -> torch.Tensor:
    """(B,) lengths -> (B,T) bool, True on real words."""
    return torch.arange(t, device=device)[None, :] < lengths.to(device)[:, None]


class Attention(nn.Module):
    """Single-head scaled dot-product attention with bias-free Q, K, V (no residual, no norm)."""

    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim, bias=False)
        self.drop = nn.Dropout(dropout)
        self.scale = 1.0 / math.sqrt(dim)
        for lin in (self.q, self.k, self.v):
            nn.init.xavier_uniform_(lin.weight)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        # queries (B,Tq,D), keys/values (B,Tk,D), key_mask (B,Tk) True = real
        scores = self.q(queries) @ self.k(keys).transpose(1, 2) * self.scale  # (B,Tq,Tk)
        scores = scores.masked_fill(~key_mask[:, None, :], torch.finfo(scores.dtype).min)
        weights = self.drop(F.softmax(scores, dim=-1))
        return weights @ self.v(keys)  # (B,Tq,D)


def run_lstm(lstm: nn.LSTM, x: torch.Tensor, lengths_cpu: torch.Tensor) -> torch.Tensor:
    """Packed LSTM over the true lengths; padded steps come back as zeros. (B,T,in) -> (B,T,out)."""
    packed = pack_padded_sequence(x, lengths_cpu, batch_first=True, enforce_sorted=False)
    out, _ = lstm(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    return out


class Encoder(nn.Module):
    """Unimodal encoder: BiLSTM (directions summed) + self-attention. (B,T,d) -> (B,T,D)."""

    def __init__(self, in_dim: int, hidden: int, dropout: float):
        super().__init__()
        self.hidden = hidden
        self.lstm = nn.LSTM(in_dim, hidden, batch_first=True, bidirectional=True)
        self.drop = nn.Dropout(dropout)
        self.attn = Attention(hidden, dropout)

    def forward(self, x: torch.Tensor, lengths_cpu: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.drop(run_lstm(self.lstm, x, lengths_cpu))  # (B,T,2D)
        h = h[..., : self.hidden] + h[..., self.hidden :]  # (B,T,D)
        return self.attn(h, h, mask)  # (B,T,D)


class MaskGenerator(nn.Module):
    """G: hidden states of one modality -> per-feature gate logits of another. (B,T,D) -> (B,T,d_x)."""

    def __init__(self, hidden: int, out_dim: int, kind: str, dropout: float):
        super().__init__()
        self.kind = kind
        if kind == "lstm":
            self.net = nn.LSTM(hidden, out_dim, batch_first=True)
            self.drop = nn.Dropout(dropout)
        else:
            self.net = nn.Linear(hidden, out_dim)

    def forward(self, h: torch.Tensor, lengths_cpu: torch.Tensor) -> torch.Tensor:
        if self.kind == "lstm":
            return self.drop(run_lstm(self.net, h, lengths_cpu))
        return self.net(h)


class TopDownMask(nn.Module):
    """m_x = 0.5 * (σ(G_xy(h_y)) + σ(G_xz(h_z))): one gate per time step and input feature of x."""

    def __init__(self, hidden: int, out_dim: int, kind: str, dropout: float):
        super().__init__()
        self.from_y = MaskGenerator(hidden, out_dim, kind, dropout)
        self.from_z = MaskGenerator(hidden, out_dim, kind, dropout)

    def forward(self, h_y: torch.Tensor, h_z: torch.Tensor, lengths_cpu: torch.Tensor) -> torch.Tensor:
        return 0.5 * (torch.sigmoid(self.from_y(h_y, lengths_cpu)) + torch.sigmoid(self.from_z(h_z, lengths_cpu)))


class CrossModalFuser(nn.Module):
    """Pairwise cross-modal attention with query-side residuals, plus a trimodal block.

    A(q <- kv) attends from q's time steps over kv's; each pair is used in both directions:
    TA = [A(a<-t)+a] + [A(t<-a)+t], AV and TV likewise; TAV = A(AV <- t) (no residual).
    """

    def __init__(self, hidden: int, dropout: float):
        super().__init__()
        names = ("a_from_t", "t_from_a", "a_from_v", "v_from_a", "v_from_t", "t_from_v", "av_from_t")
        self.blocks = nn.ModuleDict({n: Attention(hidden, dropout) for n in names})

    def forward(self, t: torch.Tensor, a: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b = self.blocks
        ta = (b["a_from_t"](a, t, mask) + a) + (b["t_from_a"](t, a, mask) + t)  # (B,T,D)
        av = (b["a_from_v"](a, v, mask) + a) + (b["v_from_a"](v, a, mask) + v)
        tv = (b["v_from_t"](v, t, mask) + v) + (b["t_from_v"](t, v, mask) + t)
        tav = b["av_from_t"](av, t, mask)
        return torch.cat([t, a, v, ta, tv, av, tav], dim=-1)  # (B,T,7D)


class AttentivePool(nn.Module):
    """BiLSTM (directions concatenated) + self-attention, summed over the real words. -> (B,2D)."""

    def __init__(self, in_dim: int, hidden: int, dropout: float):
        super().__init__()
        self.lstm = nn.LSTM(in_dim, hidden, batch_first=True, bidirectional=True)
        self.drop = nn.Dropout(dropout)
        self.attn = Attention(2 * hidden, dropout)

    def forward(self, x: torch.Tensor, lengths_cpu: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.drop(run_lstm(self.lstm, x, lengths_cpu))  # (B,T,2D)
        h = self.attn(h, h, mask)  # (B,T,2D)
        return (h * mask[..., None].to(h.dtype)).sum(dim=1)  # (B,2D)


class MMLatch(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = c = config
        self.encoders = nn.ModuleDict(
            {m: Encoder(d, c.hidden, c.encoder_dropout) for m, d in c.dims.items()}
        )
        if c.feedback:
            self.masks = nn.ModuleDict(
                {m: TopDownMask(c.hidden, d, c.mask, c.mask_generator_dropout) for m, d in c.dims.items()}
            )
        self.fuser = CrossModalFuser(c.hidden, c.fuser_dropout)
        self.pool = AttentivePool(7 * c.hidden, c.hidden, c.pool_dropout)
        self.head = nn.Linear(2 * c.hidden, 1)

    def encode(self, x: dict[str, torch.Tensor], lengths_cpu, mask) -> dict[str, torch.Tensor]:
        return {m: self.encoders[m](x[m], lengths_cpu, mask) for m in MODALITIES}

    def forward(
        self,
        text: torch.Tensor,
        audio: torch.Tensor,
        vision: torch.Tensor,
        lengths: torch.Tensor,
        return_masks: bool = False,
    ):
        """Predict one score per utterance: (B,) and, with ``return_masks``, {modality: (B,T,d_m)}.

        ``lengths`` may live on the CPU (cheapest: packing needs them there anyway) or the device.
        Returned masks are the gates before mask dropout; empty for the baseline.
        """
        b, t, _ = text.shape
        lengths_cpu = lengths.detach().to("cpu", torch.int64)
        if self.config.lengths_as_max:
            lengths_cpu = torch.full((b,), t, dtype=torch.int64)
        if int(lengths_cpu.min()) < 1 or int(lengths_cpu.max()) > t:
            raise ValueError(f"lengths must be in [1, {t}], got {lengths_cpu.tolist()}")
        mask = padding_mask(lengths_cpu, t, text.device)  # (B,T)
        x = {"text": text, "audio": audio, "vision": vision}

        masks: dict[str, torch.Tensor] = {}
        if self.config.feedback:
            h = self.encode(x, lengths_cpu, mask)  # pass 1: {m: (B,T,D)}
            others = {"text": ("audio", "vision"), "audio": ("text", "vision"), "vision": ("text", "audio")}
            drop_mask = self.training or self.config.mask_dropout_in_eval
            gated = {}
            for m, (y, z) in others.items():
                masks[m] = self.masks[m](h[y], h[z], lengths_cpu)  # (B,T,d_m) in (0,1)
                gated[m] = x[m] * F.dropout(masks[m], self.config.mask_dropout, training=drop_mask)
            x = gated

        h = self.encode(x, lengths_cpu, mask)  # pass 2 (or the only pass): {m: (B,T,D)}
        fused = self.fuser(h["text"], h["audio"], h["vision"], mask)  # (B,T,7D)
        pooled = self.pool(fused, lengths_cpu, mask)  # (B,2D)
        pred = self.head(pooled).squeeze(-1)  # (B,)
        return (pred, masks) if return_masks else pred


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
