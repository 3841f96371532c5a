"""Spoken forms: what a transcript's words sound like, so the aligner can find them in the audio.

A transcript word has two faces. Its *display* form ("Americans", "42", "don't") is what the store
and the text model see; its *spoken* form ("americans", "forty two", "don't") is what the aligner
listens for. Keeping both lets "2026" be aligned as "twenty twenty six" and still be stored as
"2026". Many words are said in more than one way ("2026" is also "two thousand twenty six"), and
the aligner accepts any of them, so a token carries its most likely form and the others.

Sentence punctuation is kept as a flag per word because utterances are split on it (CMU-MOSEI
labels sentences, not whole videos).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Token:
    """One transcript word as stored (``text``) and as heard (``forms``)."""

    text: str  # display form, surrounding punctuation removed, case kept
    spoken: tuple[str, ...]  # lower-case alignment words, e.g. ("forty", "two")
    sentence_end: bool = False  # followed by . ! ? (ends a sentence)
    cue: int | None = None  # index of the cue it came from (timed transcripts)
    # Other ways people say it: 2026 is also "two thousand twenty six" (the aligner accepts any).
    alternatives: tuple[tuple[str, ...], ...] = ()

    @property
    def forms(self) -> tuple[tuple[str, ...], ...]:
        return (self.spoken, *self.alternatives)


# --------------------------------------------------------------------------------------------
# Words and sentences

_SENTENCE_END = re.compile(r"[.!?…]")
_ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "etc", "e.g", "i.e", "no", "approx",
}
_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "ʼ": "'", "`": "'", "´": "'"})
_DASHES = re.compile(r"[—–]|--+|/")
_EDGE = re.compile(r"^[^\w$£€#@&%+]+|[^\w%']+$")


def tokenize(text: str, cue: int | None = None) -> list[Token]:
    """Split text into display words with their spoken forms and sentence-end flags."""
    text = _DASHES.sub(" ", unicodedata.normalize("NFC", text).translate(_APOSTROPHES))
    tokens: list[Token] = []
    for chunk in text.split():
        core = chunk if chunk in _SYMBOLS else _EDGE.sub("", chunk)
        core = core.strip("'") if not re.match(r"^'\d0s$", core) else core
        tail = chunk[len(chunk.rstrip(".!?…\"')]}»”")) :] if chunk else ""
        ends = bool(_SENTENCE_END.search(tail)) and core.lower().rstrip(".") not in _ABBREVIATIONS
        forms = spoken_forms(core) if core else []
        if not forms:
            if ends and tokens:  # "..." or "!" standing alone closes the previous word
                tokens[-1] = replace(tokens[-1], sentence_end=True)
            continue
        tokens.append(Token(core, tuple(forms[0]), ends, cue, tuple(tuple(f) for f in forms[1:])))
    return tokens


def normalize_text(text: str) -> list[str]:
    """Spoken words of a text: lower case, no punctuation, numbers as words (WER and alignment)."""
    return [w for tok in tokenize(text) for w in tok.spoken]


# --------------------------------------------------------------------------------------------
# Spoken form of one word

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = [(10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand")]
_ORDINAL_IRREGULAR = {
    "one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
    "nine": "ninth", "twelve": "twelfth",
}
_SYMBOLS = {"&": "and", "+": "plus", "@": "at", "%": "percent", "#": "number", "=": "equals"}
_CURRENCY = {"$": ("dollar", "dollars"), "£": ("pound", "pounds"), "€": ("euro", "euros")}


def number_words(n: int) -> list[str]:
    """Cardinal number in words: 342 -> three hundred forty two."""
    if n < 0:
        return ["minus", *number_words(-n)]
    if n < 20:
        return [_ONES[n]]
    if n < 100:
        tens, ones = divmod(n, 10)
        return [_TENS[tens]] + ([_ONES[ones]] if ones else [])
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return [_ONES[hundreds], "hundred"] + (number_words(rest) if rest else [])
    for scale, name in _SCALES:
        if n >= scale:
            if n >= scale * 1000:
                break  # beyond our named scales: read digit by digit
            high, rest = divmod(n, scale)
            return number_words(high) + [name] + (number_words(rest) if rest else [])
    return [_ONES[int(d)] for d in str(n)]


def ordinal_words(n: int) -> list[str]:
    words = number_words(n)
    last = words[-1]
    if last in _ORDINAL_IRREGULAR:
        words[-1] = _ORDINAL_IRREGULAR[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return words


def year_words(n: int) -> list[str]:
    """How years are said: 1984 -> nineteen eighty four, 2005 -> two thousand five, 2026 ->
    twenty twenty six, 1900 -> nineteen hundred, 1905 -> nineteen oh five."""
    high, low = divmod(n, 100)
    if 2000 <= n <= 2009:
        return number_words(n)
    if low == 0:
        return number_words(high) + ["hundred"]
    if low < 10:
        return number_words(high) + ["oh", _ONES[low]]
    return number_words(high) + number_words(low)


def _plural(words: list[str]) -> list[str]:
    last = words[-1]
    words[-1] = last[:-1] + "ies" if last.endswith("y") else last + ("es" if last.endswith("x") else "s")
    return words


def _digits_words(digits: str) -> list[str]:
    return [_ONES[int(d)] for d in digits]


def _with_and(words: list[str]) -> list[str] | None:
    """Colloquial "one hundred and five" beside "one hundred five" (and only before the tens)."""
    scales = ("hundred", "thousand", "million", "billion", "trillion")
    k = max((i for i, w in enumerate(words) if w in scales), default=-1)
    rest = words[k + 1 :]
    if k < 0 or not rest or "hundred" in rest:
        return None
    return words[: k + 1] + ["and"] + rest


def _forms(primary: list[str], *alternatives: list[str] | None) -> list[list[str]]:
    out = [primary]
    for alt in alternatives:
        if alt and alt not in out:
            out.append(alt)
    return out


def _integer_forms(text: str) -> list[list[str]]:
    digits = text.replace(",", "")
    if len(digits) > 1 and digits.startswith("0"):
        return [_digits_words(digits)]  # "007", phone-number-like: read digit by digit
    n = int(digits)
    cardinal = number_words(n)
    if "," not in text and len(digits) == 4 and 1100 <= n <= 2099:
        # A year: "nineteen eighty four"; from 2000 also "two thousand (and) twenty six".
        year = year_words(n)
        if n >= 2000:
            return _forms(year, cardinal, _with_and(cardinal))
        return _forms(year, cardinal)
    return _forms(cardinal, _with_and(cardinal))


def _decimal(text: str) -> list[str]:
    whole, _, frac = text.partition(".")
    head = number_words(int(whole.replace(",", ""))) if whole else ["zero"]
    return head + ["point"] + _digits_words(frac) if frac else head


_NUMBER = r"\d{1,3}(?:,\d{3})+|\d+"
_CAMEL = re.compile(r"[A-Z]{2,}(?=[A-Z][a-z])|[A-Z]?[a-z']+|[A-Z]+|[^\W\d_]+")


def _camel_parts(run: str) -> list[str]:
    """Split "MMLatch" -> MM + Latch and "YouTube" -> You + Tube, but not "McDonald" or "iPhone"
    (a lower-to-upper split needs three letters on each side)."""
    parts = _CAMEL.findall(run)
    if len(parts) < 2 or "".join(parts) != run:
        return [run]
    merged = [parts[0]]
    for part in parts[1:]:
        prev = merged[-1]
        acronym = prev.isupper() and len(prev) >= 2 and part[0].isupper()
        if acronym or (len(prev) >= 3 and len(part) >= 3 and part[0].isupper()):
            merged.append(part)
        else:
            merged[-1] = prev + part
    return merged


def _word_forms(run: str, spell: bool) -> list[list[str]]:
    if spell:
        return [[ch.lower() for ch in run]]
    cleaned = re.sub(r"[^a-z']", "", run.lower()).strip("'")
    return [[cleaned]] if cleaned else []


def spoken_forms(word: str) -> list[list[str]]:
    """Ways to say one display word, most likely first; [] for pure punctuation."""
    w = unicodedata.normalize("NFKD", word.translate(_APOSTROPHES))
    w = "".join(ch for ch in w if not unicodedata.combining(ch))
    if not w:
        return []
    if w in _SYMBOLS:
        return [[_SYMBOLS[w]]]
    # Currency: $5, $5.50, $1,200, £3
    m = re.fullmatch(rf"([$£€])({_NUMBER})(?:\.(\d+))?", w)
    if m:
        sym, whole, frac = m.groups()
        n = int(whole.replace(",", ""))
        unit = _CURRENCY[sym][0 if n == 1 else 1]
        if frac and len(frac) == 2 and int(frac):
            cents = int(frac)
            sub = ["cent" if cents == 1 else "cents"] if sym == "$" else []
            amount, change = number_words(n), number_words(cents)
            return _forms(amount + [unit] + change + sub, amount + [unit, "and"] + change + sub, amount + change)
        if frac:
            return [_decimal(f"{whole}.{frac}") + [unit]]
        amount = number_words(n)
        with_and = _with_and(amount)
        return _forms(amount + [unit], with_and + [unit] if with_and else None)
    # Percent: 50%, 3.5%
    m = re.fullmatch(rf"({_NUMBER})(?:\.(\d+))?%", w)
    if m:
        whole, frac = m.groups()
        base = _decimal(f"{whole}.{frac}") if frac else number_words(int(whole.replace(",", "")))
        return [base + ["percent"]]
    # Ordinals: 1st 2nd 3rd 21st 100th
    m = re.fullmatch(r"(\d+)(st|nd|rd|th)", w, re.IGNORECASE)
    if m:
        return [ordinal_words(int(m.group(1)))]
    # Decades: 1990s, '90s, 90s
    m = re.fullmatch(r"'?(\d{2}|\d{4})'?s", w)
    if m and m.group(1).endswith("0"):
        digits = m.group(1)
        words = year_words(int(digits)) if len(digits) == 4 else number_words(int(digits))
        return [_plural(words)]
    if re.fullmatch(_NUMBER, w):
        return _integer_forms(w)
    if re.fullmatch(rf"(?:{_NUMBER})?\.\d+", w):
        return [_decimal(w)]
    # Clock times: 10:30 -> ten thirty, 9:05 -> nine oh five
    m = re.fullmatch(r"(\d{1,2}):(\d{2})", w)
    if m:
        hours, minutes = int(m.group(1)), int(m.group(2))
        if minutes == 0:
            return _forms(number_words(hours), number_words(hours) + ["o'clock"])
        return [number_words(hours) + (["oh"] if minutes < 10 else []) + number_words(minutes)]
    # Anything else: split hyphens, letter/digit runs (P2 -> p two, MP3 -> m p three) and
    # camel case (MMLatch -> m m latch); model-code letters and acronym prefixes are spelled.
    pieces: list[list[list[str]]] = []
    for part in re.split(r"[-_.]+", w):
        runs = re.findall(r"\d+|[^\W\d_]+(?:'[^\W\d_]+)*|[&+@%#=]", part)
        has_digits = any(r.isdigit() for r in runs)
        for run in runs:
            if run.isdigit():
                pieces.append(_integer_forms(run) if len(run) <= 4 else [_digits_words(run)])
            elif run in _SYMBOLS:
                pieces.append([[_SYMBOLS[run]]])
            elif has_digits and len(run) <= 3:
                pieces.append(_word_forms(run, spell=True))
            else:
                sub = _camel_parts(run)
                for piece in sub:
                    spell = len(sub) > 1 and piece.isupper()
                    forms = _word_forms(piece, spell)
                    if forms:
                        pieces.append(forms)
    if not pieces:
        return []
    primary = [w for forms in pieces for w in forms[0]]
    alternative = [w for forms in pieces for w in forms[min(1, len(forms) - 1)]]
    return _forms(primary, alternative)


def spoken_words(word: str) -> list[str]:
    """The most likely spoken form of one display word (lower case); [] for punctuation."""
    forms = spoken_forms(word)
    return forms[0] if forms else []


def word_edits(ref: list[str], hyp: list[str]) -> int:
    """Levenshtein distance over words (substitutions + deletions + insertions)."""
    d = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, d[0] = d[0], i
        for j, h in enumerate(hyp, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (r != h))
    return d[len(hyp)]


def word_error_rate(reference: str, hypothesis: str) -> float:
    """WER after the usual normalisation (lower case, no punctuation, numbers as words)."""
    ref = normalize_text(reference)
    return word_edits(ref, normalize_text(hypothesis)) / max(1, len(ref))
