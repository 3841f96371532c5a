"""A BERT encoder in plain PyTorch and its tokenizer: the last hidden states of a BERT
checkpoint without transformers.

Why: importing transformers and ``AutoModel.from_pretrained`` cost ~4 CPU-s in every fresh
process here (the model loader imports torch's compiler and distributed packages on its way),
more than the whole text stage of a short clip, and a backfill or ``mmpipe score`` pays that
before its first video. For checkpoints of the original architecture (``model_type: bert`` with
absolute positions: MiniLM, BERT base and large, most sentence encoders) saved with a
``tokenizer.json``, this module computes the same tokens and the same last hidden states with
the same operations in the same order, bit for bit (tested against transformers' ``BertModel``
and ``AutoTokenizer``); ``extractors.text`` sends every other checkpoint through transformers.

Weights are read from ``model.safetensors`` and loaded strictly: every tensor the encoder needs
must be there with its shape, and only the pooler, task heads and the position-id buffer may be
left over.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

WEIGHTS = "model.safetensors"
TOKENIZER = "tokenizer.json"
# Checkpoint tensors the encoder does not use: the pooler, pre-training and task heads, and the
# position-id buffer older checkpoints saved.
_UNUSED_PREFIXES = ("pooler.", "cls.", "classifier.", "qa_outputs.")
_UNUSED = ("embeddings.position_ids",)


@dataclass(frozen=True)
class BertConfig:
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int
    layer_norm_eps: float
    pad_token_id: int

    @classmethod
    def plain(cls, raw: dict) -> BertConfig | None:
        """The config of a plain BERT encoder, or None for anything this module does not compute
        exactly (another architecture, relative positions, another activation, a decoder)."""
        if raw.get("model_type") != "bert" or raw.get("hidden_act", "gelu") != "gelu":
            return None
        if raw.get("position_embedding_type", "absolute") != "absolute":
            return None
        if raw.get("is_decoder") or raw.get("add_cross_attention") or raw.get("chunk_size_feed_forward", 0):
            return None
        try:
            config = cls(**{name: raw[name] for name in cls.__dataclass_fields__ if name != "pad_token_id"},
                         pad_token_id=raw.get("pad_token_id", 0))
        except (KeyError, TypeError):
            return None
        return config if config.hidden_size % config.num_attention_heads == 0 else None


class EncoderOutput(NamedTuple):
    last_hidden_state: torch.Tensor  # (B, T, C)


class Embeddings(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size, padding_idx=c.pad_token_id)
        self.position_embeddings = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)[None, :]  # (1, T)
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)  # (B, T, C)
        x = x + self.position_embeddings(positions)
        return self.LayerNorm(x)


class SelfAttention(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.n_head = c.num_attention_heads
        self.head_size = c.hidden_size // c.num_attention_heads
        self.query = nn.Linear(c.hidden_size, c.hidden_size)
        self.key = nn.Linear(c.hidden_size, c.hidden_size)
        self.value = nn.Linear(c.hidden_size, c.hidden_size)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        B, T, C = x.shape
        q = self.query(x).view(B, T, self.n_head, self.head_size).transpose(1, 2)  # (B, nh, T, hs)
        k = self.key(x).view(B, T, self.n_head, self.head_size).transpose(1, 2)
        v = self.value(x).view(B, T, self.n_head, self.head_size).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=0.0, scale=self.head_size**-0.5)
        y = y.reshape(B, -1, T, self.head_size).transpose(1, 2).contiguous()  # (B, T, nh, hs)
        return y.reshape(B, T, -1).contiguous()  # (B, T, C)


class DenseNorm(nn.Module):
    """Projection, then LayerNorm of it plus the residual (BERT's "output" blocks)."""

    def __init__(self, d_in: int, c: BertConfig):
        super().__init__()
        self.dense = nn.Linear(d_in, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class Attention(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.self = SelfAttention(c)
        self.output = DenseNorm(c.hidden_size, c)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return self.output(self.self(x, mask), x)


class Intermediate(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.intermediate_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))  # (B, T, 4C): exact GELU, BERT's "gelu"


class Layer(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.attention = Attention(c)
        self.intermediate = Intermediate(c)
        self.output = DenseNorm(c.intermediate_size, c)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        a = self.attention(x, mask)
        return self.output(self.intermediate(a), a)


class Encoder(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList([Layer(c) for _ in range(c.num_hidden_layers)])


class BertEncoder(nn.Module):
    """Token ids in, last hidden states out; module names follow the checkpoints' tensor names."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.encoder = Encoder(config)

    def forward(
        self,
        input_ids: torch.Tensor,  # (B, T)
        attention_mask: torch.Tensor | None = None,  # (B, T), 1 for tokens, 0 for padding
        token_type_ids: torch.Tensor | None = None,  # (B, T)
    ) -> EncoderOutput:
        B, T = input_ids.shape
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.embeddings(input_ids, token_type_ids)  # (B, T, C)
        mask = None  # no padding: attend everywhere (the fastest kernel)
        if attention_mask is not None and not bool(attention_mask.all()):
            mask = attention_mask.bool()[:, None, None, :].expand(B, 1, T, T)  # (B, 1, T, T): keys to attend
        for layer in self.encoder.layer:
            x = layer(x, mask)
        return EncoderOutput(x)


def plain_bert_config(folder: Path) -> BertConfig | None:
    """The folder's BERT config when this module can run it (a plain BERT with safetensors
    weights in one file and a BERT tokenizer's ``tokenizer.json``), else None."""
    if not (folder / WEIGHTS).is_file() or not _plain_bert_tokenizer(folder):
        return None
    raw = _json(folder / "config.json")
    return BertConfig.plain(raw) if raw else None


# tokenizer_config.json settings transformers' BERT tokenizer applies over tokenizer.json's
# normalizer, with the normalizer's name for each.
_NORMALIZER_SETTINGS = {"do_lower_case": "lowercase", "strip_accents": "strip_accents",
                        "tokenize_chinese_chars": "handle_chinese_chars"}


def _plain_bert_tokenizer(folder: Path) -> bool:
    """True when ``tokenizer.json`` alone tokenizes as transformers would: a BERT tokenizer whose
    normalizer already says what ``tokenizer_config.json`` asks for (transformers would
    rewrite it otherwise)."""
    tokenizer, settings = _json(folder / TOKENIZER), _json(folder / "tokenizer_config.json")
    if not tokenizer or settings.get("tokenizer_class") not in (None, "BertTokenizer", "BertTokenizerFast"):
        return False
    normalizer = tokenizer.get("normalizer") or {}
    if normalizer.get("type") != "BertNormalizer":
        return False
    return all(normalizer.get(ours) == settings[theirs] for theirs, ours in _NORMALIZER_SETTINGS.items()
               if theirs in settings)


def load_bert(folder: Path, config: BertConfig) -> BertEncoder:
    """The encoder with the folder's weights, in float32, in eval mode. Raises ``ValueError``
    naming the tensors when the checkpoint does not fit the config."""
    from safetensors.torch import load_file

    tensors = load_file(str(folder / WEIGHTS))
    if tensors and all(name.startswith("bert.") or name.startswith(_UNUSED_PREFIXES) for name in tensors):
        tensors = {name.removeprefix("bert."): t for name, t in tensors.items()}  # saved from a task model
    state = {name: t.float() for name, t in tensors.items()
             if not name.startswith(_UNUSED_PREFIXES) and name not in _UNUSED}
    model = BertEncoder(config)
    try:
        model.load_state_dict(state, strict=True)  # every tensor present, with its shape
    except RuntimeError as err:
        raise ValueError(f"weights do not fit a BERT encoder: {' '.join(str(err).split())[:300]}") from None
    return model.eval()


class BertTokenizer:
    """A plain BERT checkpoint's fast tokenizer (its ``tokenizer.json``) through the ``tokenizers``
    library, with the few calls ``extractors.text`` makes of transformers' tokenizer and the same
    results (tested against ``AutoTokenizer``): importing transformers costs ~1.5 CPU-s a process."""

    is_fast = True

    def __init__(self, folder: Path):
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_file(str(folder / TOKENIZER))
        settings = _json(folder / "tokenizer_config.json") | _json(folder / "special_tokens_map.json")
        self.unk_token = _token(settings.get("unk_token", "[UNK]"))
        self.unk_token_id = self._tok.token_to_id(self.unk_token)
        self.pad_token = _token(settings.get("pad_token", "[PAD]"))
        self.pad_token_id = self._tok.token_to_id(self.pad_token)
        self.model_max_length = int(settings.get("model_max_length", _UNBOUNDED))
        processor = self._tok.post_processor
        self._n_special = processor.num_special_tokens_to_add(False) if processor is not None else 0
        self.vocab_size = self._tok.get_vocab_size(with_added_tokens=False)
        if self.unk_token_id is None or self.pad_token_id is None:
            raise ValueError(f"tokenizer has no {self.unk_token!r} or {self.pad_token!r} token")
        # Truncation and padding are settings of the tokenizer object: one call at a time.
        self._lock = threading.Lock()

    def tokenize(self, text: str) -> list[str]:
        """The sub-word tokens of one piece of text (no special tokens)."""
        with self._lock:
            self._tok.no_truncation()
            return self._tok.encode(text, add_special_tokens=False).tokens

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        if pair:
            raise ValueError("sentence pairs are not used here")
        return self._n_special

    def __call__(
        self,
        words: list[list[str]],
        is_split_into_words: bool = True,
        add_special_tokens: bool = True,
        padding: bool = False,
        truncation: bool = False,
        max_length: int | None = None,
        return_tensors: str | None = None,
        verbose: bool = True,
    ) -> Encoded:
        """Pre-split words of each sequence to token ids, as transformers' fast tokenizer does."""
        if not is_split_into_words:
            raise ValueError("words must come pre-split")
        with self._lock:
            if truncation and max_length is not None:
                self._tok.enable_truncation(max_length)
            else:
                self._tok.no_truncation()
            if padding:
                self._tok.enable_padding(pad_id=self.pad_token_id, pad_token=self.pad_token)
            else:
                self._tok.no_padding()
            encodings = self._tok.encode_batch(words, is_pretokenized=True, add_special_tokens=add_special_tokens)
        columns = {
            "input_ids": [e.ids for e in encodings],
            "token_type_ids": [e.type_ids for e in encodings],
            "attention_mask": [e.attention_mask for e in encodings],
        }
        if return_tensors == "pt":
            columns = {name: torch.tensor(rows, dtype=torch.long) for name, rows in columns.items()}
        elif return_tensors is not None:
            raise ValueError(f"return_tensors={return_tensors!r}: only 'pt'")
        return Encoded(columns, [e.word_ids for e in encodings])


class Encoded(dict):
    """Token columns by name, and which word each token came from (None: a special or pad token)."""

    def __init__(self, columns: dict, word_ids: list[list[int | None]]):
        super().__init__(columns)
        self._word_ids = word_ids

    def word_ids(self, row: int = 0) -> list[int | None]:
        return self._word_ids[row]


_UNBOUNDED = int(1e30)  # transformers' "no limit" for model_max_length


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _token(value) -> str:
    """A special token as configured: a string, or transformers' AddedToken dict."""
    return value["content"] if isinstance(value, dict) else str(value)
