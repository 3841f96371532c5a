"""The HTML report renderer: content, escaping, self-containedness, and a real browser's view."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mmlatch.report import (
    FaceView,
    ReportInfo,
    UtteranceView,
    VideoView,
    WordView,
    diverging,
    render_report,
    score_colour,
    face_view,
    timeline_svg,
    write_report,
)
from mmlatch.score import NEUTRAL_BAND

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def make_video(video_id: str = "clip", scores=(2.2, -1.6, 0.1)) -> VideoView:
    sentences = [
        "I absolutely loved this movie",
        "but the ending was <terrible> & boring",
        "it is a film",
    ]
    utterances, t = [], 0.4
    for k, (text, score) in enumerate(zip(sentences, scores)):
        words = []
        for i, w in enumerate(text.split()):
            contribution = (0.6 if w in ("loved", "absolutely") else -0.5 if w in ("<terrible>", "boring") else 0.02 * i)
            words.append(WordView(w, t, t + 0.3, contribution, text_damped=0.1 * (i % 4)))
            t += 0.35
        utterances.append(UtteranceView(
            k, words[0].start, words[-1].end, text, score,
            "positive" if score >= 0.5 else "negative" if score <= -0.5 else "neutral", words,
            damped={"text": 0.12, "audio": 0.48, "vision": 0.61},
            top_damped={"text": [("minilm_17", 0.7)], "audio": [("mfcc_3", 0.82), ("f0_hz", 0.64)],
                        "vision": [("mouthSmileLeft", 0.91)]},
        ))
        t += 0.6
    return VideoView(video_id, f"/videos/{video_id}.mp4", t + 0.5, 0.4, "neutral", utterances,
                     ["no face found: scored from text and audio only (facial input imputed)"])


def test_page_shows_scores_words_masks_and_escapes_text():
    page = render_report([make_video()], ReportInfo(checkpoint="/ck", model="MMLatch", trained_on="SST-5"),
                         failures={"bad.mp4": "bad.mp4: not a readable media file"})
    assert page.startswith("<!DOCTYPE html>")
    # every utterance's score, every word, the masks and the failure are on the page
    for text in ("+2.20", "-1.60", "+0.10", "loved", "mouthSmileLeft 91%", "61%", "bad.mp4: not a readable media file",
                 "no face found", "trained on", "SST-5", "leave-one-word-out"):
        assert text in page, text
    # user text is escaped, never interpreted as markup
    assert "<terrible>" not in page and "&lt;terrible&gt;" in page
    assert "& boring" not in page and "&amp; boring" in page


def test_page_is_self_contained():
    page = render_report([make_video()])
    assert "<script" not in page and "<link" not in page and "@import" not in page
    urls = set(re.findall(r"(?:src|href)\s*=\s*[\"']?([^\"' >]+)", page)) | set(re.findall(r"url\(([^)]*)\)", page))
    assert not urls, urls
    # the only URL is the SVG namespace identifier, which no browser fetches
    assert set(re.findall(r"https?://[^\s\"'<>]+", page)) <= {"http://www.w3.org/2000/svg"}


def test_timeline_places_bars_by_time_and_score():
    video = make_video(scores=(3.0, -3.0, 0.0))
    svg = timeline_svg(video, width=1040, height=280)
    # one score line per utterance: y of +3 is the top of the plot, -3 the bottom
    lines = re.findall(r'<line x1="([\d.]+)" x2="([\d.]+)" y1="([\d.]+)" y2="\3" stroke="#[0-9a-f]{6}" stroke-width="3"/>', svg)
    assert len(lines) == 3
    ys = [float(y) for _, _, y in lines]
    assert ys[0] == pytest.approx(14) and ys[1] == pytest.approx(14 + 232) and ys[2] == pytest.approx(14 + 116)
    starts = [float(x0) for x0, _, _ in lines]
    assert starts == sorted(starts) and starts[0] > 48  # later utterances sit further right


def test_colours_encode_sign_and_size():
    assert diverging(0.0, 1.0) == "#ffffff"
    strong_pos, weak_pos, strong_neg = diverging(1.0, 1.0), diverging(0.2, 1.0), diverging(-1.0, 1.0)
    rgb = lambda c: tuple(int(c[i : i + 2], 16) for i in (1, 3, 5))
    assert rgb(strong_pos)[1] > rgb(strong_pos)[0]  # green dominates
    assert rgb(strong_neg)[0] > rgb(strong_neg)[1]  # red dominates
    assert sum(rgb(weak_pos)) > sum(rgb(strong_pos))  # a small contribution is paler
    assert diverging(float("nan"), 1.0) == "#ffffff"


def test_page_shows_the_face_each_utterance_describes():
    video = make_video()
    video.utterances[0].face = FaceView(1, (0.62, 0.18, 0.88, 0.52), 1.0, 0.74)
    video.utterances[1].face = FaceView(None)
    page = render_report([video])
    assert "face #1" in page and "x 62-88%, y 18-52%" in page and "conf 0.74" in page
    assert "no visible speaker" in page
    assert page.count('class="face') == 2  # the third utterance records no face choice


def test_face_view_takes_the_face_most_words_show():
    boxes = np.array([[0.1, 0.2, 0.3, 0.6], [0.6, 0.2, 0.8, 0.6], [0.6, 0.2, 0.8, 0.6], [0, 0, 0, 0]])
    view = face_view([0, 1, 1, -1], boxes, [0.9, 0.5, 0.7, 0.2])
    assert view.track == 1 and view.box == (0.6, 0.2, 0.8, 0.6)
    assert view.share == 0.5 and view.confidence == pytest.approx(0.6)
    assert face_view([-1, -1], np.zeros((2, 4)), [0.4, 0.6]).track is None


def test_baseline_without_masks_says_so(tmp_path):
    video = make_video()
    for u in video.utterances:
        u.damped, u.top_damped = {}, {}
        for w in u.words:
            w.contribution = None
    page = render_report([video])
    assert "no top-down feedback" in page and "contribution not measurable" in page


def screenshot(html_path: Path, png: Path, tmp: Path) -> Path:
    """Headless Chromium, no network or profile side effects."""
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed (Debian package 'chromium'; scripts/setup.sh installs it)")
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp / 'chromium-profile'}", f"--screenshot={png}", "--window-size=1200,1600",
        html_path.resolve().as_uri(),
    ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    assert png.exists() and png.stat().st_size > 0
    return png


def distinct_colours(png: Path) -> int:
    import cv2

    img = cv2.imread(str(png), cv2.IMREAD_COLOR)
    assert img is not None, f"{png} is not a readable PNG"
    return len(np.unique(img.reshape(-1, 3), axis=0))


def test_report_renders_in_headless_chromium(tmp_path):
    html_path = write_report(tmp_path / "report.html", [make_video("first"), make_video("second", (0.9, 1.4, -2.5))],
                             ReportInfo(model="MMLatch"))
    png = screenshot(html_path, tmp_path / "report.png", tmp_path)
    # a blank or unstyled page has a handful of colours; the plot, shaded words and bars give many
    assert distinct_colours(png) > 200
    import cv2

    img = cv2.imread(str(png))
    assert img.shape[:2] == (1600, 1200)
    # the page's green (positive) and red (negative) both appear: the colour encoding rendered
    b, g, r = (img[..., i].astype(int) for i in range(3))
    assert ((g - r > 60) & (g - b > 30)).sum() > 500
    assert ((r - g > 80) & (r - b > 60)).sum() > 500


def test_badge_colours_follow_the_labels():

    def rgb(hex_colour: str) -> tuple[int, int, int]:
        return tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))

    grey = score_colour(0.0)
    assert len(set(rgb(grey))) == 1  # neutral is a true grey
    for s in (-0.49, -0.2, 0.3, NEUTRAL_BAND - 1e-6):
        assert score_colour(s) == grey, s
    r, g, b = rgb(score_colour(-NEUTRAL_BAND))
    assert r > g + 20 and r > b + 20  # negative: visibly red from the band's edge
    r, g, b = rgb(score_colour(NEUTRAL_BAND))
    assert g > r + 20 and g > b + 20
    assert score_colour(3.0) == "#1a9850" and score_colour(-3.0) == "#d73027"  # full colour at the ends
