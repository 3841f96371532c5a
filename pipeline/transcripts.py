"""Transcripts: read plain text or subtitles (.srt .vtt .ass .ssa), split into words, normalise words for alignment.

A transcript word has two faces. Its *display* form ("Americans", "42", "don't") is what the store
and the text model see; its *spoken* form ("americans", "forty two", "don't") is what the aligner
and the WER look for in the audio. Keeping both lets "2026" be aligned as "twenty twenty six" and
still be stored as "2026". Sentence punctuation is kept as a flag per word because utterances are
split on it (CMU-MOSEI labels sentences, not whole videos).
"""

from __future__ import annotations

import html
import os
import re
import unicodedata
from dataclasses import dataclass, field, replace
from pathlib import Path

import pysubs2

from pipeline.errors import InputError

SIDECAR_SUFFIXES = (".srt", ".vtt", ".ass", ".ssa", ".txt")  # timed first: cues help long alignments


@dataclass(frozen=True)
class Cue:
    """One timed caption of a subtitle file (.srt/.vtt/.ass/.ssa)."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Token:
    text: str  # display form, surrounding punctuation removed, case kept
    spoken: tuple[str, ...]  # lower-case alignment words, e.g. ("forty", "two")
    sentence_end: bool = False  # followed by . ! ? (ends a sentence)
    cue: int | None = None  # index of the cue it came from (timed transcripts)
    # Other ways people say it: 2026 is also "two thousand twenty six" (the aligner accepts any).
    alternatives: tuple[tuple[str, ...], ...] = ()

    @property
    def forms(self) -> tuple[tuple[str, ...], ...]:
        return (self.spoken, *self.alternatives)


@dataclass
class Transcript:
    text: str
    cues: list[Cue] = field(default_factory=list)  # empty for plain text
    source: str | None = None

    @property
    def words(self) -> list[str]:
        """Display words in order (what is stored when no timing can be had)."""
        return [t.text for t in self.tokens()]

    def tokens(self) -> list[Token]:
        if not self.cues:
            return tokenize(self.text)
        out: list[Token] = []
        for i, cue in enumerate(self.cues):
            out.extend(tokenize(cue.text, cue=i))
        return out


# --------------------------------------------------------------------------------------------
# Reading


def read_transcript(path: str | os.PathLike) -> Transcript:
    """Read a transcript file; every failure is an InputError naming the file.

    Cues are put in time order (a stable sort on their start): subtitle files are not always
    written in order, and the aligner needs the words in the order they were spoken."""
    p = Path(path)
    if not p.exists():
        raise InputError("transcript file not found", str(p))
    if p.is_dir():
        raise InputError("transcript path is a folder, not a file", str(p))
    try:
        raw = p.read_bytes()
    except OSError as err:
        raise InputError(f"cannot read transcript ({err.strerror or err})", str(p)) from None
    text = _decode(raw, str(p))
    cues = _timed_cues(text, p.suffix.lower(), str(p))
    if cues is None:
        transcript = Transcript(text=text, source=str(p))
    else:
        cues.sort(key=lambda c: c.start)
        transcript = Transcript(" ".join(c.text for c in cues), cues, str(p))
    if not transcript.tokens():
        raise InputError("transcript is empty (no words found)", str(p))
    return transcript


def transcript_from_text(text: str) -> Transcript:
    """A transcript given inline (API or flow parameter) rather than as a file."""
    if not tokenize(text):
        raise InputError("transcript is empty (no words found)")
    return Transcript(text=text)


def find_sidecar(video_path: str | os.PathLike) -> Path | None:
    """``<stem>.srt/.vtt/.ass/.ssa/.txt`` next to the video (timed formats first), else None."""
    video = Path(video_path)
    for suffix in SIDECAR_SUFFIXES:
        for candidate in (video.with_suffix(suffix), video.with_suffix(suffix.upper())):
            if candidate != video and candidate.is_file():
                return candidate
    return None


def _decode(raw: bytes, name: str) -> str:
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError:
            raise InputError("transcript is not valid UTF-16 text", name) from None
    if b"\x00" in raw:
        raise InputError("transcript is a binary file, not text", name)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Older subtitle files are often Windows-1252; accept them unless they look binary.
        text = raw.decode("cp1252", errors="replace")
    control = sum(1 for ch in text if ord(ch) < 32 and ch not in "\t\n\r\f")
    if control > max(2, len(text) // 100):
        raise InputError("transcript is a binary file, not text", name)
    return text


def _timed_cues(text: str, suffix: str, source: str) -> list[Cue] | None:
    """The cues of a subtitle file, None for plain text. The content decides before the suffix,
    so a .txt holding SubRip is read as SubRip."""
    if text.lstrip().startswith("WEBVTT") or suffix == ".vtt":
        return parse_vtt(text, source)
    if "[Script Info]" in text or suffix in (".ass", ".ssa"):
        return parse_ass(text, source)
    if suffix == ".srt" or _SUBRIP_LINE.search(text):
        return parse_srt(text, source)
    return None


@dataclass(frozen=True)
class _Timing:
    """How a subtitle format writes cue times. They are checked strictly because a lenient
    parser drops, or merges into its neighbour, a cue it cannot read: its words would then be
    lost or mistimed without anyone being told."""

    stamp: re.Pattern[str]  # one time; groups: hours (may be optional), minutes, seconds, fraction
    expected: str  # the form shown in errors


_SRT_VTT_STAMP = re.compile(r"(?:(\d+):)?(\d{1,2}):(\d{2})[.,](\d{1,3})")
_SRT = _Timing(_SRT_VTT_STAMP, "HH:MM:SS,mmm --> HH:MM:SS,mmm")
_VTT = _Timing(_SRT_VTT_STAMP, "HH:MM:SS.mmm --> HH:MM:SS.mmm")
_ASS = _Timing(
    re.compile(r"(\d{1,2}):(\d{2}):(\d{2})[.,](\d{1,3})"),  # stricter than pysubs2, which reads it alike
    "Dialogue: Layer,H:MM:SS.cc,H:MM:SS.cc,Style,Name,MarginL,MarginR,MarginV,Effect,Text",
)
_TIMED_START = r"[ \t]*-?\d+:\d{2}[:.,]\d"  # a line that begins like a cue time
_LOOKS_TIMED = re.compile(_TIMED_START)
_SUBRIP_LINE = re.compile(rf"^{_TIMED_START}.*-->", re.MULTILINE)
_NO_CUES = ("WEBVTT", "NOTE", "STYLE", "REGION")  # WebVTT blocks that hold no cue
_TAG = re.compile(r"<[^>]*>|\{\\[^}]*\}")  # <i>, <v Speaker>, <00:01.000>, {\an8}


def _lines(text: str) -> list[str]:
    """Lines as an editor numbers them (CRLF, CR and LF all end a line)."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _quote(text: str, limit: int = 60) -> str:
    return f"'{text}'" if len(text) <= limit else f"'{text[: limit - 3]}...'"


def _line_error(n: int, cause: str, source: str | None) -> InputError:
    return InputError(f"line {n}: {cause}", source)


def _seconds(n: int, token: str, timing: _Timing, source: str | None) -> float:
    m = timing.stamp.fullmatch(token)
    if m is None:
        negative = token.startswith("-") and timing.stamp.fullmatch(token[1:])
        what = "negative" if negative else "malformed"
        raise _line_error(n, f"{what} timestamp {_quote(token)} (expected {timing.expected})", source)
    hours, minutes, seconds, fraction = m.groups()
    if int(minutes) > 59 or int(seconds) > 59:
        raise _line_error(n, f"timestamp {_quote(token)} out of range (minutes and seconds run 00-59)", source)
    # float("01.600") is exactly 1.6: the sum keeps round times round.
    return int(hours or 0) * 3600 + int(minutes) * 60 + float(f"{seconds}.{fraction}")


def _cue_times(n: int, start: str, end: str, timing: _Timing, source: str | None) -> tuple[float, float]:
    t0, t1 = _seconds(n, start, timing, source), _seconds(n, end, timing, source)
    if t1 < t0:
        raise _line_error(n, f"cue ends ({end}) before it starts ({start})", source)
    return t0, t1


def _timing_line(n: int, line: str, timing: _Timing, source: str | None) -> tuple[float, float]:
    """``START --> END`` and, after a space, SubRip coordinates or WebVTT cue settings."""
    start, arrow, rest = line.partition("-->")
    end = rest.split()[0] if rest.split() else ""
    if not (arrow and start.strip() and end):
        raise _line_error(n, f"malformed timing line {_quote(line)} (expected {timing.expected})", source)
    return _cue_times(n, start.strip(), end, timing, source)


def _cue_text(lines: list[str]) -> str:
    text = " ".join(lines)
    text = html.unescape(_TAG.sub(" ", text))
    text = re.sub(r"(^|\s)-\s+", r"\1", text)  # dialogue dashes "- Hello"
    return " ".join(text.split())


def _parse_cues(text: str, timing: _Timing, source: str | None) -> list[Cue]:
    """SubRip and WebVTT: a timing line, then text lines up to a blank one (a line of spaces
    counts as blank). Any line with ``-->`` is a timing line, and so is a line that begins like
    a time outside a cue's text (``00:00:01,000 —> ...`` after a word processor's autocorrect):
    both must be well formed, or the error names the line. Cue numbers and identifiers, the
    WebVTT header and NOTE/STYLE/REGION blocks are skipped; a cue with no text is dropped."""
    lines = _lines(text)
    cues: list[tuple[float, float, list[str]]] = []
    body: list[str] | None = None  # text lines of the cue being read, None between cues
    skipping = False  # inside a block that holds no cue
    for n, line in enumerate(lines, 1):
        stripped = line.strip()
        if not stripped:
            body, skipping = None, False
        elif "-->" in line or (body is None and not skipping and _LOOKS_TIMED.match(line)):
            body, skipping = [], False
            cues.append((*_timing_line(n, stripped, timing, source), body))
        elif body is not None:
            # A number right before the next timing line is that cue's number, not text.
            if not (stripped.isdigit() and n < len(lines) and "-->" in lines[n]):
                body.append(stripped)
        elif not skipping:
            skipping = stripped.split()[0] in _NO_CUES
    return [Cue(start, end, cue_text) for start, end, body in cues if (cue_text := _cue_text(body))]


def parse_srt(text: str, source: str | None = None) -> list[Cue]:
    """SubRip cues in file order; ``source`` names the file in errors."""
    return _parse_cues(text, _SRT, source)


def parse_vtt(text: str, source: str | None = None) -> list[Cue]:
    """WebVTT cues in file order; ``source`` names the file in errors."""
    return _parse_cues(text, _VTT, source)


def parse_ass(text: str, source: str | None = None) -> list[Cue]:
    """SubStation Alpha (.ass/.ssa) cues in file order, read by pysubs2 (sections, styles,
    override tags, comments and drawings). pysubs2 rejects a bad time without saying where, or
    takes ``0:00:01.00junk`` as 1 s, so the event times are checked here first."""
    for n, line in enumerate(_lines(text), 1):
        if line.lstrip().startswith("Dialogue:"):
            fields = line.split(":", 1)[1].split(",")
            if len(fields) < 3:
                raise _line_error(n, f"malformed event {_quote(line.strip())} (expected {_ASS.expected})", source)
            _cue_times(n, fields[1].strip(), fields[2].strip(), _ASS, source)
    try:
        subs = pysubs2.SSAFile.from_string(text, format_="ssa" if "[V4 Styles]" in text else "ass")
    except (pysubs2.Pysubs2Error, ValueError) as err:
        raise InputError(f"not a readable SubStation Alpha file ({err})", source) from None
    cues = ((e.start / 1000, e.end / 1000, _cue_text(e.plaintext.split("\n"))) for e in subs if e.is_text)
    return [Cue(start, end, cue_text) for start, end, cue_text in cues if cue_text]


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
