"""Spoken forms: what a transcript's words sound like, so the aligner can find them in the audio.

A transcript word has two faces. Its *display* form ("Americans", "42", "don't") is what the store
and the text model see; its *spoken* form ("americans", "forty two", "don't") is what the aligner
listens for. Keeping both lets "2026" be aligned as "twenty twenty six" and still be stored as
"2026". Many words are said in more than one way ("2026" is also "two thousand twenty six"), and
the aligner accepts any of them, so a token carries its most likely form and the others.

Number words come from num2words, which writes British English ("three hundred and forty-two").
The form without "and" comes first, as American English says it (the aligner's acoustic model
is pocketsphinx's US English one); the "and" form is offered beside it for other speakers.

Sentence punctuation is kept as a flag per word because utterances are split on it (CMU-MOSEI
labels sentences, not whole videos).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, replace
from typing import Callable

from num2words import num2words

Form = list[str]  # one way to say a word, as lower-case words

_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "ʼ": "'", "`": "'", "´": "'"})
_SYMBOLS = {"&": "and", "+": "plus", "@": "at", "%": "percent", "#": "number", "=": "equals"}
_CURRENCY = {"$": ("dollar", "dollars"), "£": ("pound", "pounds"), "€": ("euro", "euros")}
_DIGITS_FROM = 10**15  # from here on a number is an identifier, read digit by digit


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
    """Spoken words of a text: lower case, no punctuation, numbers as words. Recognised and
    reference texts compared this way differ only where the words heard differ ("42%" and
    "forty-two percent" are the same words)."""
    return [w for tok in tokenize(text) for w in tok.spoken]


# --------------------------------------------------------------------------------------------
# Numbers


def _said(n: int, to: str = "cardinal") -> Form:
    """num2words' reading as separate words: "three hundred and forty-two" -> 5 words (the
    aligner's dictionary has "forty" and "two", not "forty-two")."""
    return num2words(n, lang="en", to=to).replace("-", " ").replace(",", " ").split()


def _plain_and_british(words: Form) -> list[Form]:
    """The reading without "and" first, then num2words' own where it has one."""
    return _forms([w for w in words if w != "and"], words)


def _forms(primary: Form, *alternatives: Form | None) -> list[Form]:
    out = [primary]
    for alt in alternatives:
        if alt and alt not in out:
            out.append(alt)
    return out


def _digits(digits: str) -> Form:
    """Read digit by digit: "007" -> zero zero seven."""
    return [num2words(int(d), lang="en") for d in digits]


def number_forms(n: int) -> list[Form]:
    """Cardinal readings: 342 -> three hundred forty two, three hundred and forty two."""
    if abs(n) >= _DIGITS_FROM:
        return [(["minus"] if n < 0 else []) + _digits(str(abs(n)))]
    return _plain_and_british(_said(n))


def number_words(n: int) -> Form:
    """The most likely cardinal reading: 342 -> three hundred forty two."""
    return number_forms(n)[0]


def ordinal_forms(n: int) -> list[Form]:
    """101 -> one hundred first, one hundred and first."""
    return _plain_and_british(_said(n, "ordinal"))


def ordinal_words(n: int) -> Form:
    return ordinal_forms(n)[0]


def year_forms(n: int) -> list[Form]:
    """How years are said: 1984 -> nineteen eighty four, 2005 -> two thousand (and) five, 2026
    -> twenty twenty six, 1900 -> nineteen hundred, 1905 -> nineteen oh five."""
    return _plain_and_british(_said(n, "year"))


def year_words(n: int) -> Form:
    return year_forms(n)[0]


def _decimal(whole: str, frac: str) -> Form:
    """3.14 -> three point one four (digits after the point are read one by one)."""
    head = number_words(int(whole.replace(",", ""))) if whole else ["zero"]
    return head + ["point"] + _digits(frac) if frac else head


def _plural(words: Form) -> Form:
    last = words[-1]
    plural = last[:-1] + "ies" if last.endswith("y") else last + ("es" if last.endswith("x") else "s")
    return [*words[:-1], plural]


# --------------------------------------------------------------------------------------------
# Spoken forms of one display word, by what it looks like

_NUMBER = r"\d{1,3}(?:,\d{3})+|\d+"


def _integer(text: str) -> list[Form]:
    digits = text.replace(",", "")
    if len(digits) > 1 and digits.startswith("0"):
        return [_digits(digits)]  # "007", phone-number-like
    n = int(digits)
    if "," not in text and len(digits) == 4 and 1100 <= n <= 2099:
        return _forms(*year_forms(n), *number_forms(n))  # a year, or a count
    return number_forms(n)


def _currency(m: re.Match[str]) -> list[Form]:
    """$5, $5.50 (five dollars fifty cents, ... and fifty cents, five fifty), $1,200, £3."""
    sym, whole, frac = m.groups()
    n = int(whole.replace(",", ""))
    unit = _CURRENCY[sym][0 if n == 1 else 1]
    if frac and len(frac) == 2 and int(frac):
        cents = int(frac)
        sub = ["cent" if cents == 1 else "cents"] if sym == "$" else []
        amount, change = number_words(n), number_words(cents)
        return _forms(amount + [unit] + change + sub, amount + [unit, "and"] + change + sub, amount + change)
    if frac:
        return [_decimal(whole, frac) + [unit]]
    return [form + [unit] for form in number_forms(n)]


def _percent(m: re.Match[str]) -> list[Form]:
    whole, frac = m.groups()
    if frac:
        return [_decimal(whole, frac) + ["percent"]]
    return [form + ["percent"] for form in number_forms(int(whole.replace(",", "")))]


def _decade(m: re.Match[str]) -> list[Form] | None:
    """1990s -> nineteen nineties, '90s -> nineties."""
    digits = m.group(1)
    if not digits.endswith("0"):
        return None
    words = year_words(int(digits)) if len(digits) == 4 else number_words(int(digits))
    return [_plural(words)]


def _clock(m: re.Match[str]) -> list[Form]:
    """10:30 -> ten thirty, 9:05 -> nine oh five, 9:00 -> nine (o'clock)."""
    hours, minutes = number_words(int(m.group(1))), int(m.group(2))
    if minutes == 0:
        return _forms(hours, hours + ["o'clock"])
    return [hours + (["oh"] if minutes < 10 else []) + number_words(minutes)]


_READINGS: list[tuple[re.Pattern[str], Callable[[re.Match[str]], list[Form] | None]]] = [
    (re.compile(rf"([$£€])({_NUMBER})(?:\.(\d+))?"), _currency),
    (re.compile(rf"({_NUMBER})(?:\.(\d+))?%"), _percent),
    # Longer ordinals are identifiers and fall through to the letter/digit split.
    (re.compile(r"(\d{1,15})(?:st|nd|rd|th)", re.IGNORECASE), lambda m: ordinal_forms(int(m.group(1)))),
    (re.compile(r"'?(\d{2}|\d{4})'?s"), _decade),
    (re.compile(_NUMBER), lambda m: _integer(m.group(0))),
    (re.compile(rf"({_NUMBER})?\.(\d+)"), lambda m: [_decimal(m.group(1) or "", m.group(2))]),
    (re.compile(r"(\d{1,2}):(\d{2})"), _clock),
]


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


def _letters(run: str, spell: bool) -> list[Form]:
    if spell:
        return [[ch.lower() for ch in run]]
    cleaned = re.sub(r"[^a-z']", "", run.lower()).strip("'")
    return [[cleaned]] if cleaned else []


def _run_forms(run: str, has_digits: bool) -> list[list[Form]]:
    """One letter, digit or symbol run of a word, as one or more pieces."""
    if run.isdigit():
        return [_integer(run) if len(run) <= 4 else [_digits(run)]]
    if run in _SYMBOLS:
        return [[[_SYMBOLS[run]]]]
    if has_digits and len(run) <= 3:
        return [_letters(run, spell=True)]  # model codes: P2, MP3
    parts = _camel_parts(run)
    pieces = (_letters(part, len(parts) > 1 and part.isupper()) for part in parts)
    return [forms for forms in pieces if forms]


def _compound(word: str) -> list[Form]:
    """Split hyphens, letter/digit runs (P2 -> p two, MP3 -> m p three) and camel case
    (MMLatch -> m m latch); model-code letters and acronym prefixes are spelled. Gives the
    word read with each piece's first form, then with each piece's second where it has one."""
    pieces: list[list[Form]] = []
    for part in re.split(r"[-_.]+", word):
        runs = re.findall(r"\d+|[^\W\d_]+(?:'[^\W\d_]+)*|[&+@%#=]", part)
        has_digits = any(r.isdigit() for r in runs)
        for run in runs:
            pieces.extend(_run_forms(run, has_digits))
    if not pieces:
        return []
    primary = [w for forms in pieces for w in forms[0]]
    alternative = [w for forms in pieces for w in forms[min(1, len(forms) - 1)]]
    return _forms(primary, alternative)


def spoken_forms(word: str) -> list[Form]:
    """Ways to say one display word, most likely first; [] for pure punctuation."""
    w = unicodedata.normalize("NFKD", word.translate(_APOSTROPHES))
    w = "".join(ch for ch in w if not unicodedata.combining(ch))
    if not w:
        return []
    if w in _SYMBOLS:
        return [[_SYMBOLS[w]]]
    for pattern, read in _READINGS:
        m = pattern.fullmatch(w)
        if m and (forms := read(m)):
            return forms
    return _compound(w)


def spoken_words(word: str) -> Form:
    """The most likely spoken form of one display word (lower case); [] for punctuation."""
    forms = spoken_forms(word)
    return forms[0] if forms else []
