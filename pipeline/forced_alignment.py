"""Forced alignment of a known word sequence to audio with pocketsphinx (10 ms frames).

pocketsphinx's alignment is exact to ~16 ms on clean speech (median start error on
``alignment/truth16k``), but its cost grows faster than linearly with the length of the
utterance (5 min: 7 s, 20 min: 88 s on this machine) and one word that does not fit (a
transcript word nobody said) makes a whole search fail. So:

- a stretch up to ``max_span_s`` is first aligned in one search: a grammar of the words in
  order, each in any of its spoken forms ("2026" = "twenty twenty six" or "two thousand twenty
  six"), retried with much wider beams, then on the samples with comfort noise;
- longer audio, or a stretch whose search failed, is walked through in ~10 s windows cut at
  quiet points: a prefix grammar (the next words, free to stop after any of them) says how many
  words each window holds; words that look forced (stretched far beyond their phones, or with
  seconds of unaligned speech before them) are not kept, and a word that fits nowhere is
  dropped;
- with time hints (subtitle cues, Whisper segments) long audio is aligned hint group by group;
- dropped words are spread over the speech between their neighbours
  (``Word.timing == "interpolated"``): every word gets a timing.

Words missing from the dictionary get a pronunciation (spelled letters for vowel-less acronyms,
two dictionary words for compounds, else simple English letter-to-sound rules), so "Zyxqv" or
"Amerrikans" are aligned like any other word ("MMLatch" comes as "m m latch" from
``pipeline.spoken``).

(About 480 lines, on purpose: the searches, their fallbacks and the assembly of words share the
decoders' state within one call and read best together.)
"""

from __future__ import annotations

import importlib.metadata
import logging
import re
import threading
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from pocketsphinx import Decoder

from core.models import cached
from core.records import Audio, Word
from pipeline.pronunciation import VOWELS, letter_to_sound, spelled
from pipeline.signal import FRAME, FRAME_S, Pcm16, frame_energy_db, quietest_frame, speech_extent, speech_frames
from pipeline.spoken import Token

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class Anchor:
    """Approximate time of a run of tokens ``[first, stop)`` (a subtitle cue, a Whisper segment)."""

    start: float
    end: float
    first: int
    stop: int


def _is_filler(name: str) -> bool:
    return name.startswith(("<", "[", "+", "(")) or name == "</s>"


def _base(name: str) -> str:
    return re.sub(r"\(\d+\)$", "", name)  # "really(2)" is the second pronunciation of "really"


@dataclass
class _Signal:
    """One recording as the searches see it."""

    clean: Pcm16  # int16 samples as decoded
    robust: Pcm16  # the same with comfort noise in digitally silent frames (or clean)
    energy: np.ndarray  # dB per 10 ms frame
    loud: np.ndarray  # speech-like frames

    @classmethod
    def of(cls, audio: Audio, noise: float) -> "_Signal":
        pcm = Pcm16.of(audio)
        noisy = pcm.with_comfort_noise(noise) if noise else None
        energy = frame_energy_db(pcm)
        return cls(pcm, pcm if noisy is None else noisy, energy, speech_frames(energy))

    @property
    def variants(self) -> tuple[Pcm16, ...]:
        """Clean first (the most exact boundaries), then with comfort noise (more robust)."""
        return (self.clean,) if self.robust is self.clean else (self.clean, self.robust)


# pocketsphinx's dither noise comes from one random generator shared by every decoder of the
# process and re-seeded when a decoder's front end is made, and a decoder's feature state carries
# from one utterance to the next. So every alignment starts its decoders' front ends afresh and
# runs alone: the same audio then gives the same timings whatever the process did before.
DECODER_LOCK = threading.Lock()


class PocketsphinxAligner:
    """Forced alignment with pocketsphinx; every ``align`` call starts its decoders afresh (see
    ``DECODER_LOCK``), so its result never depends on earlier calls."""

    name = "pocketsphinx-align"

    def __init__(self, max_span_s: float = 90.0, chunk_s: float = 60.0):
        self.max_span_s = max_span_s
        self.chunk_s = chunk_s
        self._decoder = None
        self._wide = None
        self._stale: set[bool] = set()  # decoders (by ``wide``) still holding an earlier call's state
        self._lock = DECODER_LOCK
        self._added: dict[str, str] = {}  # made-up pronunciations (a function of the word only)

    @property
    def version(self) -> str:
        return f"pocketsphinx-{importlib.metadata.version('pocketsphinx')}"

    # Default beams first; when a stretch does not fit the text (a word read differently, a
    # word not said) the search dies out before the end, and a much wider beam still reaches it.
    WIDE_BEAMS = {"beam": 1e-100, "wbeam": 1e-80, "pbeam": 1e-100}
    # int16 units (~-80 dBFS) laid into digitally silent frames for the fallback searches:
    # measured on truth16k + 3 unsaid words, on espeak-ng speech and on 3.5 min of joined real
    # recordings, 3 rescues alignments that fail on exact zeros and costs least accuracy.
    COMFORT_NOISE = 3.0

    def _dec(self, wide: bool = False):
        """This call's decoder (``wide``: the wide-beam one), made on first use. A decoder kept
        from an earlier call gets a fresh front end (``reinit_feat``) when this call first asks
        for it, which re-seeds the dither exactly where making it would have: the timings are
        those of new decoders, bit for bit, without reloading the acoustic model and the
        dictionary (0.18 s a decoder, a third of aligning a short clip)."""
        if self._decoder is None:
            # No language model: alignment needs only the acoustic model and the dictionary.
            self._decoder = Decoder(lm=None, dither=True, loglevel="FATAL")
            self._stale.discard(False)
        self._refresh(False)
        if not wide:
            return self._decoder
        if self._wide is None:
            self._wide = Decoder(lm=None, dither=True, loglevel="FATAL", **self.WIDE_BEAMS)
            self._stale.discard(True)
            for word, phones in self._added.items():
                self._wide.add_word(word, phones, True)
        self._refresh(True)
        return self._wide

    def _refresh(self, wide: bool) -> None:
        if wide in self._stale:
            self._stale.discard(wide)
            (self._wide if wide else self._decoder).reinit_feat()

    def _fresh_decoders(self) -> None:
        """Start a call: the decoders of earlier calls get fresh front ends when next used."""
        self._stale = {False, True}

    # -- pronunciations ------------------------------------------------------------------------

    def pronunciation(self, word: str) -> str:
        """Dictionary pronunciation, or the one this aligner made up for an unknown word."""
        with self._lock:
            return self._pronounce(word)

    def _pronounce(self, word: str) -> str:
        dec = self._dec()
        known = dec.lookup_word(word)
        if known:
            return known
        if word in self._added:  # made up in an earlier call: teach this call's decoder
            dec.add_word(word, self._added[word], True)
            return self._added[word]
        letters = re.sub(r"[^a-z]", "", word)
        if letters and not (set(letters) & VOWELS) and len(letters) <= 6:
            phones = spelled(letters)
        else:
            phones = self._compound(letters) or letter_to_sound(letters)
        for d in (dec, self._wide):
            if d is not None:
                d.add_word(word, phones, True)
        self._added[word] = phones
        log.debug("aligner: made up pronunciation %r for %r", phones, word)
        return phones

    def _compound(self, word: str) -> str | None:
        dec = self._dec()
        for cut in range(len(word) - 3, 2, -1):
            head, tail = word[:cut], word[cut:]
            a, b = dec.lookup_word(head), dec.lookup_word(tail)
            if a and b:
                return f"{a} {b}"
        return None

    # -- alignment -----------------------------------------------------------------------------

    def align(
        self, audio: Audio, tokens: Sequence[Token], anchors: Sequence[Anchor] | None = None
    ) -> list[Word]:
        """One Word per token, in order. Each gets a timing; see the module doc for how."""
        if not tokens:
            return []
        sig = _Signal.of(audio, self.COMFORT_NOISE)
        with self._lock:
            self._fresh_decoders()
            for tok in tokens:
                for form in tok.forms:
                    for w in form:
                        self._pronounce(w)
            times: list[tuple[int, int] | None] = [None] * len(tokens)
            if anchors and len(sig.energy) * FRAME_S > self.max_span_s:
                self._align_anchored(sig, tokens, anchors, times)
            else:
                self._align_range(sig, 0, len(sig.energy), tokens, list(range(len(tokens))), times)
        return self._words(tokens, times, sig.loud)

    # The search: a grammar of the words in order, where each token may be said in any of its
    # forms ("twenty twenty six" / "two thousand twenty six"). With ``prefix`` the grammar may
    # also stop after any token: the chunk holds only the first words. (Letting the grammar skip
    # a word was tried: pocketsphinx's beam then drops real words too, so words that do not fit
    # are dropped by ``_align_range`` instead.)

    def _decode(
        self,
        pcm: Pcm16,
        lo: int,
        hi: int,
        tokens: Sequence[Token],
        idx: list[int],
        prefix: bool,
        wide_retry: bool = True,
    ) -> tuple[list[tuple[int, int]] | None, list[tuple[int, int]]]:
        """(times of all tokens ``idx`` in frames [lo, hi), or None when the search fails;
        the times of the longest run of them the search got through before failing).

        With ``prefix`` the first element holds as many of the tokens as the audio holds."""
        if not idx or hi - lo < 5:
            return None, []
        trans: list[tuple] = []
        n = len(idx)
        next_state = n + 1  # states 0..n are token boundaries
        for i, t in enumerate(idx):
            forms = tokens[t].forms
            for form in forms:
                prev = i
                for k, w in enumerate(form):
                    if k == len(form) - 1:
                        nxt = i + 1
                    else:
                        nxt, next_state = next_state, next_state + 1
                    trans.append((prev, nxt, 1.0 / len(forms) if k == 0 else 1.0, w))
                    prev = nxt
        final = n
        if prefix:
            final, next_state = next_state, next_state + 1
            trans += [(j, final, 1.0) for j in range(n + 1)]  # from 0 too: "no word here"
        data = pcm[lo * FRAME : hi * FRAME].tobytes()
        partial: list[tuple[int, int]] = []
        for wide in (False, True) if wide_retry else (False,):
            got = self._search(self._dec(wide), trans, final, data)
            if got is None:
                continue
            parsed = self._parse(got, tokens, idx, lo, prefix)
            if parsed is not None:
                return parsed, parsed
            reached = self._parse(got, tokens, idx, lo, True) or []
            if len(reached) > len(partial):
                partial = reached
        return None, partial

    @staticmethod
    def _search(dec, trans: list[tuple], final: int, data: bytes) -> list[tuple[str, int, int]] | None:
        """Decoded words (name, first frame, last frame). When the search misses the grammar's
        end, pocketsphinx hands back its best partial path instead (``_parse`` tells them apart)."""
        try:
            fsg = dec.create_fsg("mmpipe_align", 0, final, trans)
            try:
                dec.remove_search("mmpipe_align")
            except KeyError:
                pass
            dec.add_fsg("mmpipe_align", fsg)
            dec.activate_search("mmpipe_align")
            dec.start_utt()
            dec.process_raw(data, full_utt=True)
            dec.end_utt()
            segs = dec.seg()
            if segs is None:
                return None
            return [(_base(s.word), s.start_frame, s.end_frame) for s in segs if not _is_filler(s.word)]
        except (RuntimeError, ValueError) as err:
            log.debug("aligner: search failed: %s", err)
            return None

    @staticmethod
    def _parse(
        got: list[tuple[str, int, int]], tokens: Sequence[Token], idx: list[int], offset: int, prefix: bool
    ) -> list[tuple[int, int]] | None:
        """Map the decoded words back onto tokens (which form each token was said in).

        None when they do not read as the whole token sequence (with ``prefix``: as a start of
        it); a partial path must count as a failure, not as an alignment.
        """
        n, m = len(idx), len(got)
        words = [g[0] for g in got]
        # ok[i][p]: tokens i.. can be read from decoded word p on (with prefix: stopping early).
        ok = [[False] * (m + 1) for _ in range(n + 1)]
        pick: list[list[int]] = [[-1] * (m + 1) for _ in range(n + 1)]
        ok[n][m] = True
        for i in range(n - 1, -1, -1):
            forms = tokens[idx[i]].forms
            ok[i][m] = prefix
            for p in range(m - 1, -1, -1):
                for form in forms:
                    q = p + len(form)
                    if q <= m and ok[i + 1][q] and tuple(words[p:q]) == form:
                        ok[i][p], pick[i][p] = True, q
                        break
        if not ok[0][0]:
            return None
        out: list[tuple[int, int]] = []
        i, p = 0, 0
        while i < n and p < m:
            q = pick[i][p]
            out.append((got[p][1] + offset, got[q - 1][2] + 1 + offset))
            i, p = i + 1, q
        return out

    MAX_DROPS = 8  # words given up on in a row before the rest of a stretch is interpolated
    MAX_LOUD_GAP = 150  # frames of unaligned speech between two words that mean a word was forced
    MAX_FRAMES_PER_PHONE = 15  # a word longer than this per phone (+0.3 s) was stretched
    WINDOW_S = 10.0  # audio searched per step when stepping through a stretch

    def _align_range(
        self,
        sig: "_Signal",
        lo: int,
        hi: int,
        tokens: Sequence[Token],
        idx: list[int],
        times: list,
        window_s: float | None = None,
    ) -> None:
        """Align tokens ``idx`` within frames [lo, hi), tolerating words that were not said.

        A stretch up to ``max_span_s`` is first tried in one search. Otherwise (too long, or that
        search failed) it is walked through in windows of ~``window_s`` cut at quiet points: a
        prefix search says how far the words fit each window, the plausible part is kept (less
        its last word, which may run past the window or be stretched over trouble), and the
        next window starts where the kept words end. When not even the first words fit, the
        first word that does not is dropped (a transcript word nobody said); dropped words are
        spread between their neighbours later.
        """
        if (hi - lo) * FRAME_S <= self.max_span_s:
            for pcm in sig.variants:
                got, _ = self._decode(pcm, lo, hi, tokens, idx, prefix=False)
                if got is not None:
                    for t, span in zip(idx, got):
                        times[t] = span
                    return
        pcm, energy, loud = sig.robust, sig.energy, sig.loud
        window = int((window_s or self.WINDOW_S) / FRAME_S)
        words_per_frame = sum(len(tokens[t].spoken) for t in idx) / max(1, hi - lo)
        remaining = list(idx)
        drops = 0
        while remaining and hi - lo >= 5:
            if hi - lo <= 1.5 * window:
                end, trial = hi, remaining
            else:
                end = quietest_frame(energy, lo + int(0.75 * window), lo + int(1.25 * window))
                trial = remaining[: int(2 * words_per_frame * (end - lo)) + 8]
            got, _ = self._decode(pcm, lo, end, tokens, trial, prefix=True)
            if got is None:  # the search died: the first word cannot be placed here
                got, k = [], 0
            else:
                k = self._plausible(got, tokens, trial, loud)
                if not got:
                    # Either the window holds none of these words (music, untranscribed talk)
                    # or the first one was never said: look one word ahead to tell which.
                    ahead, _ = self._decode(pcm, lo, end, tokens, trial[1:], prefix=True, wide_retry=False)
                    if not ahead or self._plausible(ahead, tokens, trial[1:], loud) == 0:
                        if end >= hi:
                            return
                        lo = end
                        continue
            if k == len(remaining):
                for t, span in zip(remaining, got):
                    times[t] = span
                return
            if got and k == len(got):  # all the window held looks right
                keep = len(got) - 1 if len(got) > 1 and got[-1][1] > end - 50 else len(got)
            elif k >= 2:
                keep = k - 1  # the word before the implausible one may be stretched too
            else:
                keep = 0
            if keep:
                for t, span in zip(remaining[:keep], got[:keep]):
                    times[t] = span
                lo = got[keep - 1][1]
                remaining = remaining[keep:]
                drops = 0
                continue
            drops += 1
            if drops > self.MAX_DROPS:
                return
            drop = 1 if k == 1 and len(remaining) > 1 else 0
            log.debug("aligner: %r does not fit the audio here; its timing will be interpolated",
                      tokens[remaining[drop]].text)
            del remaining[drop]

    def _plausible(
        self, spans: list[tuple[int, int]], tokens: Sequence[Token], idx: list[int], loud: np.ndarray
    ) -> int:
        """How many leading spans look like real alignments: no long stretch of speech left
        unaligned between two words, and no word stretched far beyond its number of phones.
        (Speech before the first word is fine: words the transcript does not have.)"""
        prev_end = spans[0][0] if spans else 0
        for k, (start, end) in enumerate(spans):
            if int(loud[prev_end:start].sum()) > self.MAX_LOUD_GAP:
                return k
            phones = sum(len((self._dec().lookup_word(w) or "x").split()) for w in tokens[idx[k]].spoken)
            if end - start > self.MAX_FRAMES_PER_PHONE * phones + 30:
                return k
            prev_end = end
        return len(spans)

    def _align_anchored(
        self, sig: "_Signal", tokens: Sequence[Token], anchors: Sequence[Anchor], times: list
    ) -> None:
        """Long audio with hints (cues, Whisper segments): align runs of anchors of up to
        ``chunk_s`` within their own stretch of audio, cut at the quietest point near each
        hinted boundary (hints are approximate: Whisper's starts run early, cues are loose)."""
        anchors = sorted((a for a in anchors if a.stop > a.first), key=lambda a: a.first)
        groups: list[list[Anchor]] = []
        for a in anchors:
            if groups and a.end - groups[-1][0].start <= self.chunk_s:
                groups[-1].append(a)
            else:
                groups.append([a])
        energy = sig.energy
        cuts = [0]
        for prev, nxt in zip(groups, groups[1:]):
            e, s = prev[-1].end, nxt[0].start
            a = int((min(e, s) - 0.2) / FRAME_S)
            b = int((max(e, s) + 0.3) / FRAME_S)
            cut = quietest_frame(energy, max(a, cuts[-1] + 1), max(b, a + 2))
            cuts.append(min(len(energy) - 1, max(cuts[-1] + 1, cut)))
        cuts.append(len(energy))
        for g, lo, hi in zip(groups, cuts, cuts[1:]):
            idx = list(range(g[0].first, g[-1].stop))
            self._align_range(sig, lo, hi, tokens, idx, times)

    # -- assembling words ----------------------------------------------------------------------

    def _words(
        self, tokens: Sequence[Token], times: list[tuple[int, int] | None], speech: np.ndarray
    ) -> list[Word]:
        """Words from frame times; runs the aligner could not place are spread between their
        aligned neighbours over the speech in that gap, in proportion to their length."""
        n_frames = len(speech)
        out: list[Word | None] = [None] * len(tokens)
        for i, t in enumerate(times):
            if t is not None:
                out[i] = Word(tokens[i].text, t[0] * FRAME_S, t[1] * FRAME_S, "aligned")
        i = 0
        while i < len(tokens):
            if times[i] is not None:
                i += 1
                continue
            j = i
            while j < len(tokens) and times[j] is None:
                j += 1
            lo = times[i - 1][1] if i > 0 else 0  # type: ignore[index]
            hi = times[j][0] if j < len(tokens) else n_frames  # type: ignore[index]
            if hi <= lo:
                hi = lo + 1
            a, b = speech_extent(speech, lo, hi)
            if b - a < (j - i):
                a, b = lo, max(hi, lo + (j - i))
            weights = np.array([len("".join(tokens[k].spoken)) + 2 for k in range(i, j)], float)
            edges = a + np.concatenate([[0], np.cumsum(weights)]) / weights.sum() * (b - a)
            for k in range(i, j):
                out[k] = Word(
                    tokens[k].text,
                    float(edges[k - i]) * FRAME_S,
                    float(edges[k - i + 1]) * FRAME_S,
                    "interpolated",
                )
            log.info("aligner: %d word(s) could not be aligned; timings interpolated", j - i)
            i = j
        return out  # type: ignore[return-value]


def default_aligner() -> PocketsphinxAligner:
    """The process-wide aligner (its made-up pronunciations are reused; its decoders are not)."""
    return cached(("pocketsphinx-aligner",), PocketsphinxAligner)
