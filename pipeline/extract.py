"""One video -> one Parquet feature file: the extraction half of the pipeline, as a plain function.

Order of work (data flows one way): probe + decode -> words with timings -> utterances -> every
registered modality's features (``extractors.EXTRACTORS``) -> frame tracks pooled over the words
-> atomic Parquet write. Extractors load, and the acoustic track runs, in background threads
while the words are recognised; the face track (which landmarks only the frames the words read,
``facial.frames``) starts in the background as soon as the words are known.

A file is skipped when its Parquet output already records the same video content hash and the
same feature key (extraction config, words-stage identity, transcript): the store is its own
manifest, which survives restarts and needs no orchestration state.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from core import __version__
from core.config import ExtractConfig
from core.errors import InputError, OutputError
from core.files import MIN_FREE_BYTES, digest, sha256_file, writable_folder
from core.progress import Progress, report
from core.records import FrameFeatures, Word, WordFaces, WordFeatures
from core.threads import one_blas_thread
from extractors import EXTRACTORS, Extractor, FrameExtractor, extractor_for
from pipeline.claims import claim
from pipeline.media import decode_audio, is_quiet, probe, video_clip
from pipeline.names import output_path, video_name
from pipeline.pooling import pool_to_words
from pipeline.schema import MODALITIES, FeatureSchema, ModalitySpec, StoreMetadata
from pipeline.signal import audio_energy_db
from pipeline.speaker import speaker_features
from pipeline.store import feature_table, read_metadata, write_table
from pipeline.transcripts import Transcript, find_sidecar, read_transcript
from pipeline.utterances import split_utterances
from pipeline.words import NoSpeechError, WordsResult, words_for, words_stage_id

log = logging.getLogger("mmpipe.extract")


@dataclass
class ExtractResult:
    video: str
    output: Path
    video_id: str
    skipped: bool
    summary: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def content_hash(path: str | Path) -> str:
    try:
        return sha256_file(path)
    except FileNotFoundError:
        raise InputError("file not found", str(path)) from None
    except IsADirectoryError:
        raise InputError("is a directory, not a video file", str(path)) from None
    except OSError as err:
        raise InputError(f"cannot read file ({err.strerror})", str(path)) from None


def feature_key(config: ExtractConfig, transcript: Transcript | None = None) -> str:
    """Everything that changes the features: the extraction settings, the identity of the words
    stage (the transcript's hash, or the ASR model's weights and settings when there is none),
    the extractors' versions. With a transcript, the recogniser's settings do not matter."""
    return _feature_key(config, words_stage_id(config.words, transcript))


def _feature_key(config: ExtractConfig, words_stage: str) -> str:
    settings = config.to_dict()
    settings.pop("words")
    return digest("|".join([json.dumps(settings, sort_keys=True), words_stage, __version__]))[:20]


def find_transcript(video: Path, transcript: str | Path | None) -> Path | None:
    if transcript is not None:
        return Path(transcript)
    return find_sidecar(video)


def _stored_metadata(out_path: Path) -> StoreMetadata | None:
    """The metadata of an existing feature file; None when there is none or it is unreadable
    (a torn or foreign file is simply recomputed)."""
    if not out_path.exists():
        return None
    try:
        return read_metadata(out_path)
    except Exception:
        return None


def stored_features(out_path: Path, sha: str, key: str) -> StoreMetadata | None:
    """Metadata of ``out_path`` when it holds features of this video content and feature key;
    None when it is missing, unreadable, foreign or stale (then it is recomputed)."""
    meta = _stored_metadata(out_path)
    if meta is not None and meta.video.get("sha256") == sha and meta.video.get("feature_key") == key:
        return meta
    return None


def check_not_anothers(out_path: Path, video: Path, sha: str) -> None:
    """Refuse to replace the features of a different video. The file at ``out_path`` may be
    replaced by the same input after its content changed (same path), or when it holds the
    same content (the folder moved); anything else is another video, kept unless forced."""
    meta = _stored_metadata(out_path)
    if meta is None or meta.video.get("sha256") == sha:
        return
    recorded = meta.video.get("path")
    if recorded and Path(recorded) != video.resolve():
        raise OutputError(
            f"already holds the features of another video ({recorded}); extract into another "
            "folder, or use --force to replace them", str(out_path))


def feature_schema(config: ExtractConfig) -> FeatureSchema:
    """The schema of features extracted with ``config``: what a model trained on them records
    and what every other producer of training data (the starter-model builder) must match."""
    return FeatureSchema(
        modalities={
            m: ModalitySpec(ex.name, str(ex.version), ex.feature_dim, tuple(ex.feature_names))
            for m, ex in ((m, extractor_for(m, config)) for m in MODALITIES)
        },
        config_hash=config.hash(),
    )


def _text_model_warnings(found: WordsResult, config: ExtractConfig) -> list[str]:
    """Speech transcribed in another language than English meets an English-only text model
    (the bundled MiniLM or GloVe) unless the user chose their own."""
    if found.language in (None, "en") or config.text.model_path is not None:
        return []
    return [f"transcribed as {found.language}, but the default text model and the starter checkpoint are "
            "English-only: sentiment scores of this video are unreliable (see the README on other languages)"]


class _Abandoned(Exception):
    """Raised inside the face thread to stop it once the video has failed elsewhere."""


def spread_words(text_words: list[str], duration: float) -> list[Word]:
    """Without usable audio, a transcript's words are laid evenly over the video so the other
    modalities still line up roughly; every timing is marked interpolated."""
    n = len(text_words)
    step = duration / max(n, 1)
    return [Word(w, i * step, (i + 1) * step, timing="interpolated") for i, w in enumerate(text_words)]


def extract_video(
    video: str | Path,
    out_dir: str | Path,
    config: ExtractConfig | None = None,
    transcript: str | Path | None = None,
    progress: Progress | None = None,
    force: bool = False,
    root: str | Path | None = None,
    by_content: bool = False,
) -> ExtractResult:
    """Extract one video's word-aligned features into ``out_dir``; see the module docstring.

    ``root`` mirrors the video's sub-folders below it into ``out_dir``; ``by_content`` files it
    under a folder named after its content hash instead (a cache shared by videos from
    anywhere, where two files of the same name must not meet). The output folder is checked
    before any decoding, and the video is claimed (``pipeline.claims``) while it is extracted.
    """
    config = config or ExtractConfig()
    video = Path(video)
    t0 = time.perf_counter()
    writable_folder(out_dir)
    sha = content_hash(video)
    name = video_name(video)
    out = output_path(video, Path(out_dir) / sha[:16] if by_content else out_dir, None if by_content else root)
    writable_folder(out.parent, MIN_FREE_BYTES)
    transcript_path = find_transcript(video, transcript)
    script = read_transcript(transcript_path) if transcript_path else None
    words_stage = words_stage_id(config.words, script)  # recorded in the file too
    key = _feature_key(config, words_stage)
    if not force:
        if (meta := stored_features(out, sha, key)) is not None:
            return ExtractResult(str(video), out, name, True, meta.summary)
        check_not_anothers(out, video, sha)
    with claim(out, video):
        if not force and (meta := stored_features(out, sha, key)) is not None:  # done meanwhile
            return ExtractResult(str(video), out, name, True, meta.summary)
        return _extract(video, out, name, sha, key, words_stage, config, transcript_path, script, progress, t0)


def _extract(
    video: Path, out: Path, name: str, sha: str, key: str, words_stage: str, config: ExtractConfig,
    transcript_path: Path | None, script: Transcript | None, progress: Progress | None, t_all: float,
) -> ExtractResult:
    """The extraction itself, once the output is known to be missing or stale and claimed."""
    one_blas_thread()  # small products: spinning BLAS threads only take CPU from the other stages
    stages: dict[str, float] = {}
    warnings: list[str] = []

    def tick(stage: str, t0: float) -> None:
        stages[stage] = round(stages.get(stage, 0.0) + time.perf_counter() - t0, 3)

    t0 = time.perf_counter()
    info = probe(video)
    audio = decode_audio(video, config.media.sample_rate)
    tick("decode", t0)
    if info.frame_count == 0 and audio is None:
        raise InputError("no video frames and no audio", str(video))

    # Inputs with no speech to work on fail before any expensive stage starts. The 10 ms frame
    # energies serve this check and later the speaker choice (1.4 MB an hour), so the samples
    # themselves (115 MB an hour) can be let go as soon as the acoustic track is made.
    energy = audio_energy_db(audio) if audio is not None else None
    silent = energy is None or is_quiet(energy)
    duration = float(info.duration or (audio.duration if audio else 0.0))
    if audio is None and script is None:
        raise InputError("no audio track, so no speech to transcribe (give --transcript)", str(video))
    if silent and script is None:
        raise NoSpeechError("no speech found (the audio is silent)", str(video))

    clip = video_clip(video, info, audio)
    abandoned = threading.Event()  # set when the words fail: the frame tracks are then not needed
    words_known = threading.Event()  # set once clip.utterances holds the words (or on failure)

    def stage_progress(stage: str, done: float, total: float) -> None:
        if abandoned.is_set():
            raise _Abandoned
        report(progress, stage, done, total)

    def start(modality: str) -> tuple[Extractor, FrameFeatures | None, float]:
        """Load (and warm up) one modality's extractor; frame extractors run in the background
        too: at once, or as soon as the words are known when they compute only the frames the
        words read. Word extractors run later, in turn."""
        ex = extractor_for(modality, config)
        ex.warm_up()
        if ex.needs_words:
            if not isinstance(ex, FrameExtractor):
                return ex, None, 0.0
            words_known.wait()
            if abandoned.is_set():
                raise _Abandoned
        t = time.perf_counter()
        return ex, ex.extract(clip, stage_progress), time.perf_counter() - t

    # Every modality starts in the background while the words are recognised (in a new process
    # that is seconds of model loading and the acoustic track beside seconds of native ASR;
    # PyAV, MediaPipe, CTranslate2 and numpy release the GIL, so the cores all work).
    pool = ThreadPoolExecutor(max_workers=len(EXTRACTORS), thread_name_prefix="mmpipe-extractor")
    started: dict[str, Future] = {m: pool.submit(start, m) for m in EXTRACTORS}
    language = {"expected": config.words.language, "transcribed": None, "probability": None}
    features: dict[str, WordFeatures] = {}
    coverage: dict[str, float] = {}
    devices = {"words": "cpu"}
    faces: WordFaces | None = None  # whose face each word's vision features come from
    faces_summary: dict | None = None
    try:
        t0 = time.perf_counter()
        if silent and script is not None:
            why = "no audio track" if audio is None else "audio is silent"
            warnings.append(f"{why}: transcript words spread evenly over the video, audio features imputed")
            words = spread_words(script.words, duration or 1.0)
            utterances = split_utterances(words, config.words, script)
        else:
            try:
                found = words_for(audio, config.words, script, source=str(video))
            except NoSpeechError as err:
                raise NoSpeechError("no speech found in the audio", str(video)) from err
            utterances = found.utterances
            devices["words"] = found.device
            warnings += found.warnings + _text_model_warnings(found, config)
            language.update(transcribed=found.language, probability=found.language_probability)
        report(progress, "words", 1, 1)
        tick("words", t0)
        clip.utterances = utterances
        words_known.set()
        all_words = clip.words
        for modality in list(started):
            ex, track, seconds = started.pop(modality).result()
            devices[modality] = ex.device
            t0 = time.perf_counter()
            if track is None:  # a word extractor: its turn now
                features[modality] = ex.extract(clip, progress)
            else:
                if modality == "audio" and silent:
                    track.present[:] = False
                seen = track.present if track.faces is None else track.faces.per_frame(len(track.times)) > 0
                coverage[modality] = float(seen.mean()) if len(seen) else 0.0
                if coverage[modality] == 0.0 and ex.absent_warning:
                    warnings.append(ex.absent_warning)
                if track.faces is not None:  # whose face each word shows (pipeline.speaker)
                    choice = speaker_features(track, energy, utterances, config.facial)
                    features[modality], faces, faces_summary = choice.features, choice.faces, choice.summary
                    unspoken = faces_summary["words_without_speaker"]
                    if unspoken and silent:
                        warnings.append(f"several faces but no speech to tell who speaks: the facial features of "
                                        f"{unspoken} words are imputed and flagged")
                    elif unspoken:
                        warnings.append(f"{unspoken} words spoken by no visible face (voice-over or off-screen "
                                        "speaker): their facial features are imputed and flagged")
                else:
                    features[modality] = pool_to_words(track, all_words)
            track = None  # pooled: the frames (69 MB an hour of audio) are not kept while the next waits
            if modality == "audio":
                clip.audio = audio = None
            stages[modality] = round(seconds + time.perf_counter() - t0, 3)
    finally:
        abandoned.set()  # after an error, stop the frame tracks at their next progress step
        words_known.set()  # (and let go a frame track still waiting for the words)
        pool.shutdown(wait=True, cancel_futures=True)

    t0 = time.perf_counter()
    summary = {
        "words": len(all_words),
        "utterances": len(utterances),
        "face_coverage": round(coverage.get("vision", 0.0), 4),
        "duration_s": round(duration, 3),
        "words_imputed": {m: int(features[m].imputed.sum()) for m in MODALITIES},
        "faces": faces_summary,
        "language": language,
        "devices": devices,
        "warnings": warnings,
    }
    meta = StoreMetadata(
        schema=feature_schema(config),
        video={
            "video_id": name,
            "path": str(video.resolve()),
            "sha256": sha,
            "feature_key": key,
            # what made the words: the transcript's hash, or the recogniser (model, weights'
            # hash, device kind and arithmetic, decoding settings) and the aligner
            "words_stage": words_stage,
            "duration_s": summary["duration_s"],
            "transcript": str(transcript_path) if transcript_path else None,
        },
        config=config.to_dict(),
        summary=summary,
    )
    write_table(out, feature_table(name, utterances, features, meta, faces))
    tick("write", t0)
    summary["stages_s"] = stages
    summary["total_s"] = round(time.perf_counter() - t_all, 3)
    if summary["duration_s"] and summary["total_s"]:
        summary["realtime_factor"] = round(summary["duration_s"] / summary["total_s"], 2)
    for w in warnings:
        log.info("%s: %s", video, w)
    return ExtractResult(str(video), out, name, False, summary, warnings)
