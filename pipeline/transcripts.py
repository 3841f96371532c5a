"""Transcripts: read plain text or subtitles (.srt .vtt .ass .ssa) into text and timed cues.

A transcript is the user's own account of what was said, and its cue times are hints the aligner
uses on long recordings; so a file is read strictly, and whatever cannot be read is one error
naming the file and the line rather than words silently lost or mistimed. How its words sound is
``pipeline.spoken``'s business.
"""

from __future__ import annotations

import html
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pysubs2

from core.errors import InputError
from pipeline.spoken import Token, tokenize

SIDECAR_SUFFIXES = (".srt", ".vtt", ".ass", ".ssa", ".txt")  # timed first: cues help long alignments


@dataclass(frozen=True)
class Cue:
    """One timed caption of a subtitle file (.srt/.vtt/.ass/.ssa)."""

    start: float
    end: float
    text: str


@dataclass
class Transcript:
    """A transcript's text and, from a subtitle file, its cues (each word remembers its cue, whose
    times guide the aligner)."""

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
