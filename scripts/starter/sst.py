"""The labelled sentences the starter model learns from: Stanford Sentiment Treebank (SST-5)
trees and CMU-MOSI transcripts, read into words the way a transcript or recogniser spells them.

The trained model only ever sees recognised words, so treebank tokens are joined back into
transcript-style words ("does" + "n't" -> "doesn't", "film,"), and every labelled sub-phrase of a
tree is kept as a span of those words, to be added as extra utterances if asked.

Label mapping: SST class c (0 very negative .. 4 very positive) -> score c - 2 in -2..+2. The
five classes are equal-width bins of the annotators' slider, so equal steps keep their order and
spacing; -2/+2 ("very" negative/positive) match CMU-MOSI's "negative/positive" grades rather than
its rarely used extremes (+-3, "strongly"), and with this mapping Acc5 is exactly SST-5 accuracy
and the non-zero binary accuracy is the standard SST-2 (neutral sentences dropped).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from core.errors import InputError

SST_SCORE = {0: -2.0, 1: -1.0, 2: 0.0, 3: 1.0, 4: 2.0}
LABEL_MAPPING = (
    "SST-5 class c (0 very negative .. 4 very positive) -> score c - 2 (-2, -1, 0, +1, +2); "
    "CMU-MOSI transcripts keep their own -3..+3 scores"
)


@dataclass(frozen=True)
class Phrase:
    """A labelled sub-phrase of a sentence: words [start, stop) of the sentence."""

    start: int
    stop: int
    score: float


@dataclass(frozen=True)
class Sample:
    """One labelled sentence, as words the way a transcript or recogniser would give them."""

    key: str  # stable id, e.g. "sst-train-00012" or "mosi-03bSnISJMiM_1"
    words: tuple[str, ...]
    score: float
    split: str  # train | valid | test
    source: str  # "sst" | "mosi"
    phrases: tuple[Phrase, ...] = ()

    @property
    def text(self) -> str:
        return " ".join(self.words)


def parse_tree(line: str) -> tuple[list[str], list[tuple[int, int, int]]]:
    """A PTB-style sentiment tree -> its leaves and every node's (first_leaf, stop_leaf, label).

    Nodes come in post-order, so the root (the sentence's own label) is the last one.
    """
    tokens = re.findall(r"\(|\)|[^\s()]+", line)
    leaves: list[str] = []
    spans: list[tuple[int, int, int]] = []
    stack: list[tuple[int, int]] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok == "(":
            if i + 1 >= len(tokens) or not tokens[i + 1].isdigit():
                raise ValueError(f"node without a numeric label at token {i}")
            stack.append((int(tokens[i + 1]), len(leaves)))
            i += 2
        elif tok == ")":
            if not stack:
                raise ValueError("unbalanced ')'")
            label, start = stack.pop()
            if len(leaves) == start:
                raise ValueError("node without words")
            spans.append((start, len(leaves), label))
            i += 1
        else:
            leaves.append(tok)
            i += 1
    if stack or not spans or spans[-1][:2] != (0, len(leaves)):
        raise ValueError("unbalanced tree")
    return leaves, spans


_UNESCAPE = {"-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]", "-LCB-": "{", "-RCB-": "}",
             "``": '"', "''": '"', "`": "'"}
_OPENING = {"-LRB-", "-LSB-", "-LCB-", "``", "`", "$", "#"}
_CLITICS = {"n't", "'s", "'re", "'ve", "'ll", "'d", "'m"}
_SPOKEN_SYMBOLS = {"&", "+", "="}  # said aloud ("and", "plus", "equals"): words of their own


def _unescape(leaf: str) -> str:
    return _UNESCAPE.get(leaf, leaf.replace("\\/", "/").replace("\\*", "*"))


def detokenize(leaves: Sequence[str]) -> tuple[list[str], list[int]]:
    """Treebank tokens -> words as a transcript would spell them, and each leaf's word index.

    Clitics join their word ("does" + "n't" -> "doesn't"), punctuation sticks to the word before
    it and opening brackets/quotes to the word after it ("film," "(mostly)"), as recognisers and
    transcripts write them; every leaf still maps to one word, so labelled sub-phrases of the
    tree map to word spans.
    """
    words: list[str] = []
    owner: list[int] = [-1] * len(leaves)
    pending = ""  # opening punctuation waiting for its word
    pending_leaves: list[int] = []
    for i, leaf in enumerate(leaves):
        tok = _unescape(leaf)
        is_punct = not any(ch.isalnum() for ch in tok) and tok not in _SPOKEN_SYMBOLS
        if leaf in _OPENING or (is_punct and not words):
            pending += tok
            pending_leaves.append(i)
            continue
        if words and (leaf.lower() in _CLITICS or is_punct):
            words[-1] += tok
            owner[i] = len(words) - 1
            continue
        words.append(pending + tok)
        owner[i] = len(words) - 1
        for j in pending_leaves:
            owner[j] = len(words) - 1
        pending, pending_leaves = "", []
    if pending_leaves:  # opening marks with nothing after them
        if not words:
            raise ValueError("sentence has no words")
        words[-1] += pending
        for j in pending_leaves:
            owner[j] = len(words) - 1
    return words, owner


def _has_word(leaves: Sequence[str]) -> bool:
    return any(any(ch.isalnum() for ch in _unescape(leaf)) for leaf in leaves)


def sst_sample(line: str, key: str, split: str) -> Sample:
    """One treebank line -> a Sample with every distinct labelled sub-phrase as a word span."""
    leaves, spans = parse_tree(line)
    words, owner = detokenize(leaves)
    by_span: dict[tuple[int, int], float] = {}
    for start, stop, label in spans[:-1]:
        if not _has_word(leaves[start:stop]):
            continue  # a lone comma or quote is not a phrase anyone says
        a, b = owner[start], owner[stop - 1] + 1
        if b - a < len(words):
            by_span[(a, b)] = SST_SCORE[label]  # post-order: the widest node of a span wins
    phrases = tuple(Phrase(a, b, s) for (a, b), s in sorted(by_span.items()))
    return Sample(key, tuple(words), SST_SCORE[spans[-1][2]], split, "sst", phrases)


def read_sst(path: str | Path, split: str, prefix: str | None = None) -> list[Sample]:
    """All sentences of an SST tree file (train.txt, dev.txt, test.txt)."""
    path = Path(path)
    prefix = prefix or f"sst-{path.stem}"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise InputError(f"cannot read SST file ({err.strerror or err})", str(path)) from None
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            out.append(sst_sample(line, f"{prefix}-{n:05d}", split))
        except (ValueError, KeyError) as err:
            raise InputError(f"line {n} is not a sentiment tree ({err})", str(path)) from None
    if not out:
        raise InputError("no sentences in SST file", str(path))
    return out


def read_mosi_text(path: str | Path, splits: Iterable[str] = ("train",)) -> list[Sample]:
    """CMU-MOSI transcripts with their -3..+3 labels (``segment_id,split,sentiment,text``)."""
    path = Path(path)
    wanted = set(splits)
    out = []
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                split = {"dev": "valid", "val": "valid"}.get(row["split"], row["split"])
                words = tuple(row["text"].split())
                if split not in wanted or not words:
                    continue
                score = float(np.clip(float(row["sentiment"]), -3.0, 3.0))
                out.append(Sample(f"mosi-{row['segment_id']}", words, score, split, "mosi"))
    except OSError as err:
        raise InputError(f"cannot read MOSI transcripts ({err.strerror or err})", str(path)) from None
    except (KeyError, ValueError) as err:
        raise InputError(f"not a MOSI transcript table ({type(err).__name__}: {err})", str(path)) from None
    return out


def pick_phrases(sample: Sample, k: int, min_words: int, rng: np.random.Generator) -> list[Phrase]:
    """Up to ``k`` labelled sub-phrases of at least ``min_words`` words, drawn at random."""
    cands = [p for p in sample.phrases if p.stop - p.start >= min_words]
    if k <= 0 or not cands:
        return []
    idx = rng.choice(len(cands), size=min(k, len(cands)), replace=False)
    return [cands[i] for i in sorted(idx)]

