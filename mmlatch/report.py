"""The HTML report of ``mmpipe score --report``: one self-contained page per run.

A sentiment score alone says little about *why*; the page shows three things next to it:
- a timeline of utterance scores over the video (x = time, y = -3..+3), so a viewer sees where the
  speaker turned positive or negative;
- the transcript with every word shaded by its contribution (leave-one-word-out occlusion: how much
  the utterance's score drops when the word is removed from the model's input), the only
  explanation here that is measured on the model itself rather than guessed from attention;
- the top-down masks, MMLatch's own mechanism: how much of the text, audio and face input the
  model damped in each utterance (1 - mean mask) and which input features it damped most.

Everything is inline (CSS and SVG drawn here, no script, no font or image fetched), so the file
opens from disk, in a mail attachment or an air-gapped machine alike. The renderer reads plain
view records (``VideoView``); ``report_views`` builds them from a scoring run. (About 460
lines, on purpose: the page's views, SVG, HTML and CSS are one self-contained artefact.)
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from core.files import atomic_write
from mmlatch.explain import TOP_FEATURES
from mmlatch.score import NEUTRAL_BAND, ScoreRun
from pipeline.store import read_video

MODALITY_TITLES = {"text": "text", "audio": "audio", "vision": "face"}
MODALITY_COLOURS = {"text": "#4062bb", "audio": "#d2871e", "vision": "#8c4bb3"}
SCORE_RANGE = 3.0


@dataclass
class WordView:
    text: str
    start: float
    end: float
    # Utterance score minus the score without this word; None where it cannot be measured
    # (a one-word utterance has nothing left to score).
    contribution: float | None = None
    text_damped: float | None = None  # 1 - mean of this word's text mask


@dataclass
class FaceView:
    """Whose face the utterance's vision features come from (the speaker choice of extraction)."""

    track: int | None  # identity of the face most of its words show; None: no visible face spoke
    box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # x0, y0, x1, y1, fractions of the picture
    share: float = 0.0  # fraction of the utterance's words that show it
    confidence: float = 0.0  # mean speaker confidence of those words


def face_view(tracks, boxes, confidence) -> FaceView:
    """The face most words of an utterance show (lowest id on a tie), with its mean box."""
    tracks = np.asarray(tracks)
    shown = tracks[tracks >= 0]
    if shown.size == 0:
        return FaceView(None, share=0.0, confidence=float(np.mean(confidence)) if len(confidence) else 0.0)
    ident = int(np.bincount(shown).argmax())
    mine = tracks == ident
    box = tuple(round(float(v), 3) for v in np.asarray(boxes)[mine].mean(axis=0))
    return FaceView(ident, box, float(mine.mean()), float(np.asarray(confidence)[mine].mean()))


@dataclass
class UtteranceView:
    utterance_id: int
    start: float
    end: float
    text: str
    score: float
    label: str
    words: list[WordView] = field(default_factory=list)
    damped: dict[str, float] = field(default_factory=dict)  # modality -> 1 - mean mask
    # modality -> [(feature name, damped fraction)], most damped first
    top_damped: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    face: FaceView | None = None  # None when the features record no face choice


@dataclass
class VideoView:
    video_id: str
    path: str
    duration: float
    score: float
    label: str
    utterances: list[UtteranceView]
    warnings: list[str] = field(default_factory=list)


@dataclass
class ReportInfo:
    """What the page says about the model that produced the scores."""

    checkpoint: str = ""
    model: str = ""  # e.g. "MMLatch (top-down feedback)"
    trained_on: str = ""
    limits: str = ""
    contribution_method: str = (
        "leave-one-word-out occlusion: the word's row (its text, audio and face features) is "
        "removed from the utterance and the utterance is scored again; contribution = full score "
        "minus that score. Text embeddings are contextual, so neighbouring words still carry a "
        "little of a removed word's meaning: contributions are a lower bound on its influence."
    )


# ---------------------------------------------------------------------------------------------
# Colours


def _mix(a: tuple[int, int, int], b: tuple[int, int, int], t: float) -> str:
    t = min(max(t, 0.0), 1.0)
    r, g, bl = (round(x + (y - x) * t) for x, y in zip(a, b))
    return f"#{r:02x}{g:02x}{bl:02x}"


_WHITE = (255, 255, 255)
_GREY = (150, 150, 150)
_POS = (26, 152, 80)
_NEG = (215, 48, 39)


def diverging(value: float, vmax: float) -> str:
    """White (0) to green (+vmax) or red (-vmax); the sign is the hue, the size the depth."""
    if not math.isfinite(value) or vmax <= 0:
        return "#ffffff"
    # Capped below full saturation so black text stays readable on the strongest words.
    return _mix(_WHITE, _POS if value > 0 else _NEG, 0.8 * min(abs(value) / vmax, 1.0))


def score_colour(score: float) -> str:
    """Bars and badges: grey across the neutral band (so a "neutral" badge never looks red or
    green), then from a clear tint at its edge to full colour at the ends of the scale."""
    if not math.isfinite(score) or abs(score) < NEUTRAL_BAND:
        return _mix(_WHITE, _GREY, 1)
    t = min((abs(score) - NEUTRAL_BAND) / (SCORE_RANGE - NEUTRAL_BAND), 1.0)
    return _mix(_GREY, _POS if score > 0 else _NEG, 0.35 + 0.65 * t)


# ---------------------------------------------------------------------------------------------
# Pieces


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _fmt_score(score: float) -> str:
    return f"{score:+.2f}" if math.isfinite(score) else "n/a"


def _fmt_time(t: float) -> str:
    return f"{t:.1f}"


def _nice_step(span: float, target: int = 10) -> float:
    """A round tick spacing (1, 2, 5 x 10^k) giving about ``target`` ticks over ``span``."""
    if span <= 0:
        return 1.0
    raw = span / target
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def timeline_svg(video: VideoView, width: int = 1040, height: int = 280) -> str:
    """Utterance scores as bars from zero over each utterance's time span, the overall
    (duration-weighted) score as a dashed line."""
    left, right, top, bottom = 48, 16, 14, 34
    pw, ph = width - left - right, height - top - bottom
    end_time = max([video.duration or 0.0] + [u.end for u in video.utterances] + [1e-3])

    def x(t: float) -> float:
        return left + pw * max(0.0, min(t, end_time)) / end_time

    def y(s: float) -> float:
        s = max(-SCORE_RANGE, min(SCORE_RANGE, s))
        return top + ph * (SCORE_RANGE - s) / (2 * SCORE_RANGE)

    parts = [
        f'<svg class="timeline" viewBox="0 0 {width} {height}" width="100%" '
        f'xmlns="http://www.w3.org/2000/svg" role="img" '
        f'aria-label="utterance sentiment scores over time">',
        f'<rect x="{left}" y="{y(3):.1f}" width="{pw}" height="{ph / 2:.1f}" fill="#eef7f1"/>',
        f'<rect x="{left}" y="{y(0):.1f}" width="{pw}" height="{ph / 2:.1f}" fill="#fbeeee"/>',
    ]
    for s in range(-3, 4):
        stroke = "#777" if s == 0 else "#d6d6d6"
        parts.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{y(s):.1f}" y2="{y(s):.1f}" stroke="{stroke}" '
            f'stroke-width="{1.2 if s == 0 else 0.8}"/>'
            f'<text x="{left - 8}" y="{y(s) + 4:.1f}" text-anchor="end" class="tick">{s:+d}</text>'
        )
    step = _nice_step(end_time)
    n_ticks = int(end_time / step + 1e-9)
    for k in range(n_ticks + 1):
        t = k * step
        parts.append(
            f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{top + ph}" y2="{top + ph + 4}" stroke="#777"/>'
            f'<text x="{x(t):.1f}" y="{top + ph + 17}" text-anchor="middle" class="tick">{t:g}</text>'
        )
    parts.append(
        f'<text x="{left + pw}" y="{height - 2}" text-anchor="end" class="axis">time (s)</text>'
        f'<text x="12" y="{top + ph / 2:.1f}" text-anchor="middle" class="axis" '
        f'transform="rotate(-90 12 {top + ph / 2:.1f})">score</text>'
    )
    for u in video.utterances:
        if not math.isfinite(u.score):
            continue
        x0, x1 = x(u.start), x(u.end)
        w = max(x1 - x0, 2.0)
        y0, ys = y(0), y(u.score)
        colour = score_colour(u.score)
        tip = f"utterance {u.utterance_id + 1}, {_fmt_time(u.start)}-{_fmt_time(u.end)} s: {_fmt_score(u.score)} {u.label}\n{u.text}"
        parts.append(
            f'<g><title>{_esc(tip)}</title>'
            f'<rect x="{x0:.1f}" y="{min(y0, ys):.1f}" width="{w:.1f}" height="{max(abs(ys - y0), 1.5):.1f}" '
            f'fill="{colour}" fill-opacity="0.55"/>'
            f'<line x1="{x0:.1f}" x2="{x0 + w:.1f}" y1="{ys:.1f}" y2="{ys:.1f}" stroke="{colour}" stroke-width="3"/>'
            + (  # numbers only where they fit; the tooltip names every bar
                f'<text x="{x0 + w / 2:.1f}" y="{(ys - 6) if u.score >= 0 else (ys + 15):.1f}" '
                f'text-anchor="middle" class="uttnum">{u.utterance_id + 1}</text>' if w >= 16 else ""
            )
            + "</g>"
        )
    if math.isfinite(video.score):
        yo = y(video.score)
        parts.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{yo:.1f}" y2="{yo:.1f}" stroke="#222" '
            f'stroke-dasharray="6 4" stroke-width="1.4"/>'
            f'<text x="{left + pw - 4}" y="{yo - 5:.1f}" text-anchor="end" class="overall">'
            f'overall {_fmt_score(video.score)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _badge(score: float, label: str, with_score: bool = True) -> str:
    text = " ".join(x for x in (_fmt_score(score) if with_score else "", _esc(label)) if x)
    return f'<span class="badge" style="background:{score_colour(score)}">{text}</span>'



def _word_span(word: WordView, vmax: float) -> str:
    tip = [f"{word.start:.2f}-{word.end:.2f} s"]
    if word.contribution is not None:
        tip.append(f"contribution {word.contribution:+.3f}")
        bg = diverging(word.contribution, vmax)
    else:
        tip.append("contribution not measurable")
        bg = "#ffffff"
    if word.text_damped is not None:
        tip.append(f"text input damped {100 * word.text_damped:.0f}%")
    return f'<span class="w" style="background:{bg}" title="{_esc("; ".join(tip))}">{_esc(word.text)}</span>'


def transcript_html(video: VideoView) -> str:
    contributions = [
        abs(w.contribution) for u in video.utterances for w in u.words
        if w.contribution is not None and math.isfinite(w.contribution)
    ]
    vmax = max(contributions, default=0.0)
    rows = []
    for u in video.utterances:
        words = " ".join(_word_span(w, vmax) for w in u.words) or _esc(u.text)
        rows.append(
            f'<div class="utt"><div class="uhead"><span class="unum">{u.utterance_id + 1}</span>'
            f'<span class="time">{_fmt_time(u.start)}-{_fmt_time(u.end)} s</span>'
            f"{_badge(u.score, u.label)}{face_tag(u.face)}</div><div class=\"words\">{words}</div></div>"
        )
    legend = ""
    if vmax > 0:
        legend = (
            '<div class="legend"><span>lowered the score</span>'
            f'<span class="grad" style="background:linear-gradient(90deg,{diverging(-1, 1)},#ffffff,{diverging(1, 1)})"></span>'
            f"<span>raised the score</span><span class=\"muted\">(full colour = {vmax:.3f} points)</span></div>"
        )
    return legend + "".join(rows)


def face_tag(face: FaceView | None) -> str:
    """Which face the utterance's face features describe, and where it is in the picture."""
    if face is None:
        return ""
    if face.track is None:
        return ('<span class="face none" title="no face in the picture moved with this speech: the face '
                'features of its words are imputed">face: no visible speaker</span>')
    x0, y0, x1, y1 = face.box
    where = f"x {100 * x0:.0f}-{100 * x1:.0f}%, y {100 * y0:.0f}-{100 * y1:.0f}%"
    share = "" if face.share >= 0.999 else f", {100 * face.share:.0f}% of words"
    return (f'<span class="face" title="face track {face.track}: box {where} of the picture; speaker '
            f'confidence {face.confidence:.2f}{share}">face #{face.track} &middot; {where}'
            f' &middot; conf {face.confidence:.2f}{share}</span>')


def _damp_bar(modality: str, value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return '<td class="num muted">-</td>'
    pct = 100 * max(0.0, min(1.0, value))
    return (
        f'<td class="num"><div class="bar"><div style="width:{pct:.1f}%;background:{MODALITY_COLOURS[modality]}">'
        f'</div></div><span>{pct:.0f}%</span></td>'
    )


def masks_html(video: VideoView) -> str:
    if not any(u.damped for u in video.utterances):
        return '<p class="muted">This model has no top-down feedback (late-fusion baseline): nothing to show.</p>'
    head = "".join(f"<th>{MODALITY_TITLES[m]} damped</th>" for m in MODALITY_TITLES)
    rows = []
    for u in video.utterances:
        cells = "".join(_damp_bar(m, u.damped.get(m)) for m in MODALITY_TITLES)
        top = []
        for m in MODALITY_TITLES:
            feats = u.top_damped.get(m) or []
            if feats:
                names = ", ".join(f"{_esc(n)} {100 * d:.0f}%" for n, d in feats)
                top.append(f'<div><span class="mod" style="color:{MODALITY_COLOURS[m]}">{MODALITY_TITLES[m]}:</span> {names}</div>')
        rows.append(
            f'<tr><td class="num">{u.utterance_id + 1}</td>{cells}<td class="feats">{"".join(top)}</td></tr>'
        )
    return (
        f'<table class="masks"><thead><tr><th>#</th>{head}<th>most damped features</th></tr></thead>'
        f'<tbody>{"".join(rows)}</tbody></table>'
    )


_CSS = """
:root { color-scheme: light; }
body { font-family: -apple-system, "Segoe UI", "DejaVu Sans", Helvetica, Arial, sans-serif;
       margin: 0; background: #f4f5f7; color: #1d1f23; line-height: 1.45; }
main { max-width: 1100px; margin: 0 auto; padding: 20px 24px 40px; }
h1 { font-size: 24px; margin: 8px 0 4px; }
h2 { font-size: 20px; margin: 0 0 2px; }
h3 { font-size: 15px; margin: 22px 0 6px; text-transform: uppercase; letter-spacing: .04em; color: #444; }
.meta { color: #555; font-size: 13px; margin: 0 0 14px; }
.meta b { color: #222; }
section.video { background: #fff; border-radius: 8px; padding: 18px 22px; margin: 18px 0;
                box-shadow: 0 1px 3px rgba(0,0,0,.12); }
.path { color: #777; font-size: 12px; word-break: break-all; }
.summary { display: flex; align-items: baseline; gap: 14px; margin: 10px 0 4px; flex-wrap: wrap; }
.big { font-size: 38px; font-weight: 700; }
.badge { display: inline-block; color: #fff; border-radius: 10px; padding: 1px 9px; font-size: 13px;
         font-weight: 600; white-space: nowrap; }
.summary .badge { font-size: 16px; padding: 3px 12px; }
.face { display: inline-block; color: #5d3a78; background: #f1e9f7; border-radius: 10px; padding: 1px 9px;
        font-size: 12px; margin-left: 6px; white-space: nowrap; }
.face.none { color: #777; background: #eee; }
.warn { background: #fff6d6; border-left: 4px solid #e0a800; padding: 6px 10px; margin: 6px 0;
        font-size: 13px; }
.note { color: #555; font-size: 12.5px; margin: 2px 0 8px; }
.failures { background: #fdecea; border-left: 4px solid #d33; padding: 8px 12px; font-size: 13px; }
svg.timeline { display: block; background: #fff; }
svg .tick { font-size: 11px; fill: #555; }
svg .axis { font-size: 12px; fill: #333; }
svg .uttnum { font-size: 11px; fill: #222; font-weight: 600; }
svg .overall { font-size: 12px; fill: #222; font-weight: 600; }
.utt { padding: 7px 0; border-top: 1px solid #eee; }
.uhead { display: flex; gap: 10px; align-items: center; font-size: 12.5px; color: #555; margin-bottom: 3px; }
.unum { font-weight: 700; color: #222; min-width: 18px; }
.words { font-size: 16px; line-height: 1.9; }
.w { padding: 2px 3px; border-radius: 3px; }
.legend { display: flex; gap: 8px; align-items: center; font-size: 12px; color: #444; margin: 4px 0 6px; }
.grad { display: inline-block; width: 160px; height: 12px; border: 1px solid #ccc; border-radius: 2px; }
.muted { color: #888; }
table.masks { border-collapse: collapse; width: 100%; font-size: 13px; }
table.masks th { text-align: left; font-weight: 600; color: #444; border-bottom: 2px solid #ddd; padding: 4px 8px; }
table.masks td { border-bottom: 1px solid #eee; padding: 5px 8px; vertical-align: top; }
td.num { white-space: nowrap; }
.bar { display: inline-block; width: 90px; height: 10px; background: #eceef2; border-radius: 2px;
       vertical-align: middle; margin-right: 6px; overflow: hidden; }
.bar div { height: 100%; }
td.feats { font-size: 12px; color: #333; }
.mod { font-weight: 600; }
footer { color: #888; font-size: 12px; margin-top: 24px; }
"""


def video_html(video: VideoView) -> str:
    warnings = "".join(f'<div class="warn">{_esc(w)}</div>' for w in video.warnings)
    n = len(video.utterances)
    return (
        f'<section class="video" id="{_esc(video.video_id)}"><h2>{_esc(video.video_id)}</h2>'
        f'<div class="path">{_esc(video.path)}</div>'
        f'<div class="summary"><span class="big">{_fmt_score(video.score)}</span>{_badge(video.score, video.label, with_score=False)}'
        f'<span class="muted">overall sentiment on -3..+3, duration-weighted over {n} '
        f'utterance{"s" if n != 1 else ""} in {video.duration:.1f} s of video</span></div>{warnings}'
        f"<h3>Timeline</h3>{timeline_svg(video)}"
        f'<h3>Transcript: words shaded by contribution</h3>{transcript_html(video)}'
        f"<h3>Top-down masks: what the model damped</h3>"
        f'<p class="note">MMLatch scores each modality twice: the first pass of text, audio and face '
        f"builds masks for the other two, which multiply their input (one gate per word and feature) "
        f"before the second pass. <b>Damped</b> = 1 - mean mask over the utterance's words and "
        f"features; listed are the face and audio features whose gates were lowest, and for text "
        f"the most damped words (text features are embedding dimensions).</p>{masks_html(video)}"
        "</section>"
    )


def render_report(
    videos: list[VideoView],
    info: ReportInfo | None = None,
    failures: dict[str, str] | None = None,
    title: str = "mmpipe sentiment report",
) -> str:
    """The whole page as one string."""
    info = info or ReportInfo()
    meta = []
    if info.model or info.checkpoint:
        meta.append(f"<b>model</b> {_esc(info.model)} <span class=\"muted\">{_esc(info.checkpoint)}</span>")
    if info.trained_on:
        meta.append(f"<b>trained on</b> {_esc(info.trained_on)}")
    if info.limits:
        meta.append(f"<b>limits</b> {_esc(info.limits)}")
    meta.append(f"<b>word contribution</b> {_esc(info.contribution_method)}")
    fail = ""
    if failures:
        items = "".join(f"<li>{_esc(msg)}</li>" for msg in failures.values())
        fail = f'<div class="failures"><b>Not scored ({len(failures)}):</b><ul>{items}</ul></div>'
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = "".join(video_html(v) for v in videos) or '<p class="muted">No video was scored.</p>'
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body><main>"
        f'<h1>{_esc(title)}</h1><p class="meta">{"<br>".join(meta)}</p>{fail}{body}'
        f"<footer>Generated by mmpipe on {stamp}. Scores: -3 (very negative) to +3 (very positive).</footer>"
        "</main></body></html>\n"
    )


def write_report(path: str | Path, videos: list[VideoView], info: ReportInfo | None = None,
                 failures: dict[str, str] | None = None) -> Path:
    """Render and write atomically; returns the path written."""
    page = render_report(videos, info, failures)
    path = Path(path)
    atomic_write(path, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))
    return path


# ---------------------------------------------------------------------------------------------
# From a scoring run


def report_views(run: ScoreRun) -> list[VideoView]:
    """The report's view records, from the scores and (when computed) the explanations."""
    views = []
    for v in run.scored:
        row = run.video_row(v.video_id)
        if row is None:
            continue
        features = read_video(v.features)
        words_of = {int(u): (w, s, e) for u, w, s, e in zip(features.utterance_ids, features.words, features.starts, features.ends)}
        uid_row = {int(u): k for k, u in enumerate(features.utterance_ids)}
        utterances = []
        for u in run.utterances_of(v.video_id):
            uid = u["utterance_id"]
            ex = (run.explanations or {}).get((v.video_id, uid))
            texts, starts, ends = words_of[uid]
            word_views = [
                WordView(
                    t, float(s), float(e),
                    contribution=ex.contributions[i] if ex else None,
                    text_damped=ex.text_damped_per_word[i] if ex and ex.text_damped_per_word else None,
                )
                for i, (t, s, e) in enumerate(zip(texts, starts, ends))
            ]
            top = dict(ex.top_damped) if ex else {}
            if ex and ex.text_damped_per_word:
                # Text features are embedding dimensions with no meaning of their own: the
                # damped unit a reader understands is the word.
                order = sorted(range(len(texts)), key=lambda i: -ex.text_damped_per_word[i])
                top["text"] = [(f'"{texts[i]}"', ex.text_damped_per_word[i]) for i in order[:TOP_FEATURES]]
            k = uid_row[uid]
            face = None if features.face_tracks is None else face_view(
                features.face_tracks[k], features.face_boxes[k], features.face_confidence[k])
            utterances.append(UtteranceView(
                uid, u["start"], u["end"], u["text"], u["score"], u["label"], word_views,
                damped=dict(ex.damped) if ex else {}, top_damped=top, face=face,
            ))
        views.append(VideoView(v.video_id, v.video, row["duration"], row["score"], row["label"], utterances, v.warnings))
    return views


def report_info(run: ScoreRun) -> ReportInfo:
    """What the checkpoint says about itself (training data, test figures, limit) for the
    report's header, so a reader knows how far to trust the scores."""
    meta = run.checkpoint.metadata or {}
    training = meta.get("training") or {}
    parts = [str(training[k]) for k in ("description", "labels") if training.get(k)]
    if not parts and training.get("features"):
        parts.append(f"features {training['features']}, labels {training.get('labels', '?')}")
    metrics = meta.get("metrics") or {}
    for name, figures in metrics.items():
        # headline figures as the starter build records them, e.g. {"sst_test": {...}}
        if name.endswith("test") and isinstance(figures, dict) and figures.get("binary_accuracy_nonneutral") is not None:
            shown = [f"binary accuracy {100 * figures['binary_accuracy_nonneutral']:.1f}%"]
            shown += [f"{label} {figures[key]:.3f}" for key, label in (("mae", "MAE"), ("pearson_r", "Pearson r"))
                      if isinstance(figures.get(key), (int, float))]
            parts.append(f"{name.replace('_', ' ')}: {', '.join(shown)}")
    model = "MMLatch (top-down feedback)" if run.checkpoint.config.feedback else "late-fusion baseline (no feedback)"
    return ReportInfo(
        checkpoint=str(run.checkpoint.path), model=model, trained_on="; ".join(parts),
        limits=str(training.get("limit") or training.get("limits") or ""),
    )
