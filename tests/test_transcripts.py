"""Transcripts: reading .txt/.srt/.vtt/.ass/.ssa and sidecar lookup (no models)."""

from __future__ import annotations

import pytest

from core.errors import InputError
from flows import cli
from pipeline.transcripts import (
    find_sidecar,
    parse_ass,
    parse_srt,
    parse_vtt,
    read_transcript,
    transcript_from_text,
)

SRT = """1
00:00:01,600 --> 00:00:04,200
<i>Hello</i> there,
- general Kenobi!

2
00:00:04,300 --> 00:00:06,000 X1:40 X2:600 Y1:20 Y2:50
It cost $5 in 2026.

3
00:01:02,000 --> 00:01:03,500
{\\an8}Bye &amp; thanks
"""

VTT = """WEBVTT - a title line

NOTE this block is a comment
and spans two lines

STYLE
::cue { color: lime }

intro
00:01.000 --> 00:02.500 align:start position:10%
<v Roger Bingham>We are in New York City

00:00:02.600 --> 00:00:04.000
<c.loud>It's</c> <00:00:03.100>the 3rd time.
"""

ASS = r"""[Script Info]
; written by hand
ScriptType: v4.00+

[V4+ Styles]
Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding
Style: Default,Arial,20,&H00FFFFFF,&H000000FF,&H00000000,&H00000000,0,0,0,0,100,100,0,0,1,2,2,2,10,10,10,1

[Events]
Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text
Dialogue: 0,0:00:04.30,0:00:06.00,Default,,0,0,0,,It cost $5, in 2026.
Comment: 0,0:00:02.00,0:00:03.00,Default,,0,0,0,,a note to the typesetter
Dialogue: 0,0:00:01.60,0:00:04.20,Default,Obi-Wan,0,0,0,,{\i1}Hello{\i0} there,\N- general Kenobi!
Dialogue: 0,0:00:05.00,0:00:06.00,Default,,0,0,0,,{\p1}m 0 0 l 100 0 100 100{\p0}
"""

SSA = """[Script Info]
ScriptType: v4.00

[V4 Styles]
Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, TertiaryColour, BackColour, Bold, Italic, BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, AlphaLevel, Encoding
Style: Default,Arial,20,16777215,65535,65535,-2147483640,-1,0,1,3,0,2,30,30,30,0,0

[Events]
Format: Marked, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text
Dialogue: Marked=0,0:00:01.60,0:00:04.20,Default,,0000,0000,0000,,Bye and thanks
"""


def test_srt_cues():
    cues = parse_srt(SRT.replace("\n", "\r\n"))
    assert [(c.start, c.end) for c in cues] == [(1.6, 4.2), (4.3, 6.0), (62.0, 63.5)]
    assert cues[0].text == "Hello there, general Kenobi!"
    assert cues[1].text == "It cost $5 in 2026."
    assert cues[2].text == "Bye & thanks"


def test_vtt_cues():
    cues = parse_vtt(VTT)
    assert [(c.start, c.end) for c in cues] == [(1.0, 2.5), (2.6, 4.0)]
    assert cues[0].text == "We are in New York City"
    assert cues[1].text == "It's the 3rd time."


def test_ass_and_ssa_cues():
    # Comments and drawings are not speech; override tags and \N line breaks are not words.
    cues = parse_ass(ASS)
    assert [(c.start, c.end) for c in cues] == [(4.3, 6.0), (1.6, 4.2)]
    assert cues[1].text == "Hello there, general Kenobi!"
    assert cues[0].text == "It cost $5, in 2026."
    assert [(c.start, c.end, c.text) for c in parse_ass(SSA)] == [(1.6, 4.2, "Bye and thanks")]


def test_cues_in_time_order_and_empty_cues_skipped(tmp_path):
    # Cue 2 is out of order and cue 3 has a timing line but no text: both are fine.
    path = tmp_path / "clip.srt"
    path.write_text(
        "1\n00:00:05,000 --> 00:00:06,000\nsecond words\n\n"
        "2\n00:00:01,000 --> 00:00:02,000\nfirst words\n\n"
        "3\n00:00:03,000 --> 00:00:04,000\n\n"
        "4\n00:00:03,000 --> 00:00:04,000\n<i></i>\n"
    )
    script = read_transcript(path)
    assert [(c.start, c.text) for c in script.cues] == [(1.0, "first words"), (5.0, "second words")]
    assert script.words == ["first", "words", "second", "words"]
    assert [t.cue for t in script.tokens()] == [0, 0, 1, 1]
    # .ass events are often written out of order too
    (tmp_path / "clip.ass").write_text(ASS)
    assert read_transcript(tmp_path / "clip.ass").words[:4] == ["Hello", "there", "general", "Kenobi"]


SRT_LINE_6 = "1\n00:00:01,000 --> 00:00:02,000\nHello\n\n2\n{}\nworld\n"
SRT_FORM = "(expected HH:MM:SS,mmm --> HH:MM:SS,mmm)"
ASS_FORM = "(expected Dialogue: Layer,H:MM:SS.cc,H:MM:SS.cc,Style,Name,MarginL,MarginR,MarginV,Effect,Text)"
ASS_EVENTS = "[Script Info]\nScriptType: v4.00+\n\n[Events]\nFormat: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n{}\n"


@pytest.mark.parametrize(
    "name, content, cause",
    [
        (
            "clip.srt",
            SRT_LINE_6.format("00:00:0X,500 --> 00:00:04,000"),
            f"line 6: malformed timestamp '00:00:0X,500' {SRT_FORM}",
        ),
        (
            "clip.srt",
            SRT_LINE_6.format("00:00:04,000 --> 00:00:03,500"),
            "line 6: cue ends (00:00:03,500) before it starts (00:00:04,000)",
        ),
        (
            "clip.srt",
            SRT_LINE_6.format("-00:00:01,000 --> 00:00:04,000"),
            f"line 6: negative timestamp '-00:00:01,000' {SRT_FORM}",
        ),
        (
            "clip.srt",
            SRT_LINE_6.format("00:00:03,000 --> 00:00:75,000"),
            "line 6: timestamp '00:00:75,000' out of range (minutes and seconds run 00-59)",
        ),
        (
            "clip.srt",
            SRT_LINE_6.format("00:00:03,000 --> 00:00:04,0000"),
            f"line 6: malformed timestamp '00:00:04,0000' {SRT_FORM}",
        ),
        (  # a word processor's autocorrect turned --> into an em dash
            "clip.srt",
            SRT_LINE_6.format("00:00:03,000 \u2014> 00:00:04,000"),
            f"line 6: malformed timing line '00:00:03,000 \u2014> 00:00:04,000' {SRT_FORM}",
        ),
        (
            "clip.srt",
            SRT_LINE_6.format("00:00:03,000 -->"),
            f"line 6: malformed timing line '00:00:03,000 -->' {SRT_FORM}",
        ),
        (  # SubRip in a .txt is read as SubRip, errors included
            "clip.txt",
            SRT_LINE_6.format("00:00:03,000 --> 00:00:0X,000"),
            f"line 6: malformed timestamp '00:00:0X,000' {SRT_FORM}",
        ),
        (  # line numbers count CRLF lines as an editor does, after a UTF-16 byte order mark
            "clip.srt",
            SRT_LINE_6.format("00:00:0X,500 --> 00:00:04,000").replace("\n", "\r\n").encode("utf-16"),
            f"line 6: malformed timestamp '00:00:0X,500' {SRT_FORM}",
        ),
        (
            "clip.vtt",
            "WEBVTT\n\nNOTE a comment\n\n00:01.000 --> 00:0X.500\nHi\n",
            "line 5: malformed timestamp '00:0X.500' (expected HH:MM:SS.mmm --> HH:MM:SS.mmm)",
        ),
        (
            "clip.ass",
            ASS_EVENTS.format("Dialogue: 0,0:00:01.00,0:00:0X.50,Default,,0,0,0,,Hello"),
            f"line 6: malformed timestamp '0:00:0X.50' {ASS_FORM}",
        ),
        (
            "clip.ass",
            ASS_EVENTS.format("Dialogue: 0,0:00:02.00,0:00:01.50,Default,,0,0,0,,Hello"),
            "line 6: cue ends (0:00:01.50) before it starts (0:00:02.00)",
        ),
        (
            "clip.ass",
            ASS_EVENTS.format("Dialogue: 0,0:00:01.00"),
            f"line 6: malformed event 'Dialogue: 0,0:00:01.00' {ASS_FORM}",
        ),
    ],
)
def test_malformed_subtitles_name_the_line_and_cause(tmp_path, name, content, cause):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    with pytest.raises(InputError) as err:
        read_transcript(path)
    assert str(err.value) == f"{path}: {cause}"


def test_unreadable_substation_file_is_an_input_error(tmp_path):
    path = tmp_path / "clip.ass"
    path.write_text(ASS.replace("Style: Default,Arial,20,", "Style: Default,Arial,big,"))
    with pytest.raises(InputError, match="not a readable SubStation Alpha file"):
        read_transcript(path)


def test_cli_names_the_bad_line_before_any_work(data_dir, tmp_path, capsys):
    bad = tmp_path / "bad.srt"
    bad.write_text(SRT_LINE_6.format("00:00:0X,500 --> 00:00:04,000"))
    out = tmp_path / "out"
    video = data_dir / "videos" / "retalking_face_5.mp4"
    code = cli.main(["extract", str(video), "--transcript", str(bad), "--out", str(out)])
    assert code == 1
    assert capsys.readouterr().err.splitlines() == [
        f"mmpipe: error: {bad}: line 6: malformed timestamp '00:00:0X,500' {SRT_FORM}"
    ]
    assert not out.exists() or not any(out.iterdir())

def test_read_transcript_formats(tmp_path):
    (tmp_path / "a.srt").write_text(SRT, encoding="utf-8")
    (tmp_path / "a.vtt").write_text(VTT, encoding="utf-8")
    (tmp_path / "a.txt").write_bytes("\ufeffCaf\u00e9 society. Second one".encode("utf-8"))
    (tmp_path / "b.txt").write_bytes("Na\xefve r\xe9sum\xe9".encode("cp1252"))  # legacy encoding
    srt = read_transcript(tmp_path / "a.srt")
    assert len(srt.cues) == 3 and srt.tokens()[0].cue == 0 and srt.tokens()[-1].cue == 2
    assert srt.words[:4] == ["Hello", "there", "general", "Kenobi"]
    assert len(read_transcript(tmp_path / "a.vtt").cues) == 2
    (tmp_path / "a.ssa").write_text(SSA, encoding="utf-8")
    assert read_transcript(tmp_path / "a.ssa").words == ["Bye", "and", "thanks"]
    txt = read_transcript(tmp_path / "a.txt")
    assert txt.cues == [] and txt.words == ["Café", "society", "Second", "one"]
    assert read_transcript(tmp_path / "b.txt").words == ["Naïve", "résumé"]
    # an .txt that is really SubRip is read as cues
    (tmp_path / "c.txt").write_text(SRT, encoding="utf-8")
    assert len(read_transcript(tmp_path / "c.txt").cues) == 3


@pytest.mark.parametrize(
    "name, content, cause",
    [
        ("empty.txt", b"", "empty"),
        ("punct.txt", b" ... -- !! ", "empty"),
        ("binary.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 20, "binary"),
        ("nocues.srt", b"1\n\n2\n", "empty"),
    ],
)
def test_bad_transcripts_name_the_file(tmp_path, name, content, cause):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError) as err:
        read_transcript(path)
    assert str(path) in str(err.value) and cause in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_or_folder_transcript(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_transcript(tmp_path / "nope.txt")
    with pytest.raises(InputError, match="folder"):
        read_transcript(tmp_path)
    with pytest.raises(InputError, match="empty"):
        transcript_from_text("  ?! ")


def test_find_sidecar_prefers_timed_formats(tmp_path):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"")
    assert find_sidecar(video) is None
    (tmp_path / "clip.txt").write_text("hello")
    assert find_sidecar(video) == tmp_path / "clip.txt"
    (tmp_path / "clip.ssa").write_text(SSA)
    assert find_sidecar(video) == tmp_path / "clip.ssa"
    (tmp_path / "clip.ass").write_text(ASS)
    assert find_sidecar(video) == tmp_path / "clip.ass"
    (tmp_path / "clip.vtt").write_text(VTT)
    assert find_sidecar(video) == tmp_path / "clip.vtt"
    (tmp_path / "clip.srt").write_text(SRT)
    assert find_sidecar(video) == tmp_path / "clip.srt"
    (tmp_path / "other.srt").write_text(SRT)
    assert find_sidecar(tmp_path / "other.mov") == tmp_path / "other.srt"
