"""Speech recognition: Whisper (packaged weights) on real speech, realignment, no-speech, the
verified weight join, offline loading, and the transformers / pocketsphinx backends."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import socket
import tempfile
from pathlib import Path

import numpy as np
import pytest

import core.models
from core.config import WordsConfig
from core.errors import ModelError
from core.records import Audio
from pipeline import whisper_weights
from pipeline.asr import (
    LanguageMismatch,
    PocketsphinxRecogniser,
    Transcription,
    TransformersRecogniser,
    WhisperRecogniser,
    make_recogniser,
)
from pipeline.spoken import normalize_text
from pipeline.whisper_weights import BASE_SHA256, ensure_whisper_base, resolve_whisper, verify_file
from pipeline.words import NoSpeechError, words_for, words_stage_id
from tests.asr_tools import FixedRecogniser
from tests.asr_tools import word_error_rate as wer
from tests.conftest import DATA, VIDEOS
from tests.media_fixtures import GERMAN, espeak
from tests.test_forced_alignment import JFK_TEXT, load_audio, timing_errors


@pytest.fixture(scope="module")
def whisper_base() -> WhisperRecogniser:
    return WhisperRecogniser(WordsConfig(asr_model="base"))


@pytest.fixture(scope="module")
def jfk() -> Audio:
    return load_audio(DATA / "speech" / "jfk.flac")


def test_jfk_gives_the_known_sentence(whisper_base, jfk):
    utts = words_for(jfk, WordsConfig(), recogniser=whisper_base).utterances
    words = [w for u in utts for w in u.words]
    text = " ".join(w.text for w in words)
    assert wer(JFK_TEXT, text) <= 0.1, text
    americans = next(w for w in words if w.text == "Americans")
    assert americans.start < 1.8
    assert americans.timing == "aligned" and americans.confidence is not None
    assert sum(w.timing == "aligned" for w in words) >= 0.8 * len(words)
    assert all(a.end <= b.start + 1e-6 for a, b in zip(words, words[1:]))


def test_grid_clip_gives_its_sentence(whisper_base):
    audio = load_audio(DATA / "grid" / "id2_vcd_swwp2s.mpg")
    utts = words_for(audio, WordsConfig(), recogniser=whisper_base).utterances
    said = " ".join(w.text for u in utts for w in u.words)
    assert normalize_text(said) == "set white with p two soon".split(), said


def test_realigned_word_timings_on_truth16k(whisper_base):
    audio = load_audio(DATA / "alignment" / "truth16k.wav")
    truth = [tuple(x) for x in json.loads((DATA / "alignment" / "truth16k.json").read_text())]
    raw = whisper_base.recognise(audio)
    realigned = [w for u in words_for(audio, WordsConfig(), recogniser=FixedRecogniser(raw)).utterances for w in u.words]
    assert normalize_text(" ".join(w.text for w in realigned)) == [t[0] for t in truth]
    err = timing_errors(realigned, truth)
    raw_err = timing_errors(raw.words, truth)
    print("truth16k whisper raw:", raw_err, "realigned:", err)
    assert err["start_median_ms"] < 40 and err["end_median_ms"] < 40, err
    assert err["start_mean_ms"] < raw_err["start_mean_ms"]


@pytest.mark.parametrize("clip", ["WolfgangLanger_Pexels.mp4", "single_face.mp4", "no_face.mp4"])
def test_no_speech_gives_the_clean_message(whisper_base, clip):
    """Digital silence, near-silent room noise (-57 dBFS) and loud ambient sound: no words."""
    audio = load_audio(VIDEOS / clip)
    with pytest.raises(NoSpeechError) as err:
        words_for(audio, WordsConfig(), recogniser=whisper_base, source=clip)
    assert str(err.value).startswith(f"{clip}: no speech found")
    assert whisper_base.recognise(audio).words == []  # VAD: no hallucinated words


@pytest.fixture(scope="module")
def german() -> Audio:
    """German speech (espeak-ng's German voice): Whisper's detector hears it as German, p 0.99."""
    if not shutil.which("espeak-ng"):
        pytest.skip("espeak-ng is not installed (scripts/setup.sh installs it)")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "de.wav"
        espeak(GERMAN, wav, voice="de")
        return load_audio(wav)


@pytest.mark.parametrize("model", ["base", "tiny.en"])
def test_speech_in_another_language_is_an_error_not_english_words(german, model):
    """Forced to English, Whisper turns German speech into English-sounding words; the language
    is checked first (with base's detector beside the English-only tiny.en)."""
    with pytest.raises(LanguageMismatch) as err:
        words_for(german, WordsConfig(asr_model=model), source="talk.mp4")
    message = str(err.value)
    assert message.startswith("talk.mp4: the speech is in German (de, p=0.9")
    assert "not English as set (words.language=en)" in message and "--language de" in message


def test_auto_transcribes_the_language_spoken(german, jfk):
    found = words_for(german, WordsConfig(language="auto"))
    assert found.language == "de" and found.language_probability > 0.9 and found.warnings == []
    assert {"gestern", "kino", "schauspieler"} <= {w.text.lower().strip(",.") for u in found.utterances for w in u.words}
    english = words_for(jfk, WordsConfig())
    assert english.language == "en" and english.warnings == []


def test_an_unsure_detection_is_a_warning(whisper_base, jfk, monkeypatch):
    """The detector is unsure the speech is English: English words anyway, and a warning."""
    real = WhisperRecogniser._transcribe
    asked: list[str | None] = []

    def unsure(self, samples, language):
        asked.append(language)
        segments, info = real(self, samples, language)
        if language is None:  # the detecting call: pretend it heard Dutch, unsure
            info = dataclasses.replace(info, language="nl", language_probability=0.55)
        return segments, info

    monkeypatch.setattr(WhisperRecogniser, "_transcribe", unsure)
    found = words_for(jfk, WordsConfig(), recogniser=whisper_base)
    assert found.warnings == ["the speech may not be English: the detector heard Dutch (nl, p=0.55); "
                              "transcribed as English"]
    assert asked == [None, "en"]  # detected in the first call, transcribed as set in the second
    assert normalize_text(" ".join(w.text for u in found.utterances for w in u.words)) == normalize_text(JFK_TEXT)
    # The check can be turned off (the user knows the language): no detection at all.
    asked.clear()
    unchecked = WhisperRecogniser(WordsConfig(check_language=False))
    assert words_for(jfk, WordsConfig(check_language=False), recogniser=unchecked).warnings == []
    assert asked == ["en"]


# ---------------------------------------------------------------------------------------------
# Packaged weights


def _fake_parts(root: Path, payload: list[bytes]) -> tuple[Path, list[Path]]:
    src = root / "pkg"
    src.mkdir()
    for name in whisper_weights.BASE_FILES:
        (src / name).write_text("{}")
    parts = []
    for i, blob in enumerate(payload, 1):
        parts.append(src / f"model.bin.part{i}")
        parts[-1].write_bytes(blob)
    return src, parts


def test_join_is_atomic_verified_and_rebuilt_when_corrupt(tmp_path):
    payload = [os.urandom(300_000), os.urandom(200_001)]
    good = hashlib.sha256(b"".join(payload)).hexdigest()
    src, parts = _fake_parts(tmp_path, payload)
    cache = tmp_path / "cache"
    cache.mkdir()
    kwargs = dict(source_dir=src, parts=parts, expected_sha=good, expected_size=500_001)

    target = ensure_whisper_base(cache, **kwargs)
    assert (target / "model.bin").read_bytes() == b"".join(payload)
    assert all((target / f).is_file() for f in whisper_weights.BASE_FILES)

    # corrupt the cached join in place (same size): detected by the stamp, rebuilt
    with open(target / "model.bin", "r+b") as fh:
        fh.seek(1000)
        fh.write(b"\x00\x01\x02")
    assert ensure_whisper_base(cache, **kwargs) == target
    assert hashlib.sha256((target / "model.bin").read_bytes()).hexdigest() == good
    # a truncated join too
    with open(target / "model.bin", "r+b") as fh:
        fh.truncate(1000)
    ensure_whisper_base(cache, **kwargs)
    assert (target / "model.bin").stat().st_size == 500_001

    # corrupted packages: a clear ModelError and nothing half-written left behind
    shutil.rmtree(target)
    parts[1].write_bytes(payload[1][:-1] + b"X")
    with pytest.raises(ModelError, match="SHA-256"):
        ensure_whisper_base(cache, **kwargs)
    assert sorted(p.name for p in cache.iterdir() if p.is_dir()) == []


def test_real_packaged_base_weights_join_to_the_known_hash(tmp_path):
    target = ensure_whisper_base(tmp_path)
    assert (target / "model.bin").stat().st_size == whisper_weights.BASE_SIZE
    assert whisper_weights.sha256_file(target / "model.bin") == BASE_SHA256
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".whisper-base.")] == [
        ".whisper-base.lock"
    ]


def test_weight_verification_is_remembered_until_the_file_changes(tmp_path, monkeypatch):
    blob = tmp_path / "model.bin"
    blob.write_bytes(b"weights" * 1000)
    sha = hashlib.sha256(blob.read_bytes()).hexdigest()
    calls = []
    real = whisper_weights.sha256_file
    monkeypatch.setattr(whisper_weights, "sha256_file", lambda p, *a: calls.append(p) or real(p, *a))
    verify_file(blob, sha, "test", tmp_path)
    verify_file(blob, sha, "test", tmp_path)
    assert len(calls) == 1
    blob.write_bytes(b"tampered" * 1000)
    with pytest.raises(ModelError, match="SHA-256"):
        verify_file(blob, sha, "test", tmp_path)
    assert len(calls) == 2


def test_model_names_resolve_without_a_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_whisper("tiny.en", tmp_path).path.name == "model"
    with pytest.raises(ModelError, match="HF_HUB_OFFLINE"):
        resolve_whisper("Systran/faster-whisper-small", tmp_path)
    with pytest.raises(ModelError, match="not found"):
        resolve_whisper(str(tmp_path / "missing"), tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="model.bin"):
        resolve_whisper(str(tmp_path / "empty"), tmp_path)
    with pytest.raises(ModelError, match="unknown ASR backend"):
        make_recogniser(WordsConfig(asr_backend="kaldi"))


# ---------------------------------------------------------------------------------------------
# Offline loading; the other backends


@pytest.fixture(scope="module")
def tiny_hf_models(tmp_path_factory) -> dict[str, Path]:
    """A tiny random wav2vec2 (CTC) and a tiny random Whisper, built and saved locally."""
    import torch
    from transformers import (
        GenerationConfig,
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizerFast,
    )

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("hf")
    w2v = root / "wav2vec2"
    w2v.mkdir()
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4}
    vocab.update({c: 5 + i for i, c in enumerate("abcdefghijklmnopqrstuvwxyz'")})
    (w2v / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = Wav2Vec2CTCTokenizer(str(w2v / "vocab.json"), word_delimiter_token="|")
    features = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, return_attention_mask=False)
    Wav2Vec2Processor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(w2v)
    Wav2Vec2ForCTC(
        Wav2Vec2Config(
            vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
            intermediate_size=32, conv_dim=(16, 16, 16), conv_stride=(5, 4, 4),
            conv_kernel=(10, 4, 4), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
            pad_token_id=0,
        )
    ).save_pretrained(w2v)

    whisper = root / "whisper"
    src, _ = whisper_weights.base_parts()  # Whisper's real tokenizer, from the packaged base model
    tok = WhisperTokenizerFast(tokenizer_file=str(src / "tokenizer.json"))
    ids = {t: tok.convert_tokens_to_ids(t) for t in (
        "<|startoftranscript|>", "<|endoftext|>", "<|en|>", "<|transcribe|>", "<|translate|>",
        "<|notimestamps|>")}
    WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tok).save_pretrained(whisper)
    config = WhisperConfig(
        vocab_size=len(tok), num_mel_bins=80, d_model=16, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
        max_source_positions=1500, max_target_positions=64,
        decoder_start_token_id=ids["<|startoftranscript|>"], eos_token_id=ids["<|endoftext|>"],
        pad_token_id=ids["<|endoftext|>"], bos_token_id=ids["<|endoftext|>"],
    )
    model = WhisperForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=config.decoder_start_token_id, eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id, bos_token_id=config.bos_token_id,
        alignment_heads=[[0, 0], [0, 1]], no_timestamps_token_id=ids["<|notimestamps|>"],
        lang_to_id={"<|en|>": ids["<|en|>"]}, is_multilingual=True, max_length=12,
        task_to_id={"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]},
    )
    model.save_pretrained(whisper)
    return {"wav2vec2": w2v, "whisper": whisper}


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails loudly (and no proxy could route one)."""
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[:2]}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(core.models, "_models", {})  # load for real, inside the guard


def test_model_loading_never_touches_the_network(no_network, tiny_hf_models, jfk):
    short = Audio(jfk.samples[: 16000 * 3], 16000)
    tiny = WhisperRecogniser(WordsConfig(asr_model="tiny.en"))
    assert "fellow" in normalize_text(tiny.recognise(short).text)
    for kind, folder in tiny_hf_models.items():
        rec = make_recogniser(WordsConfig(asr_backend="transformers", asr_model=str(folder)))
        assert isinstance(rec, TransformersRecogniser) and rec.model_type == kind
        result = rec.recognise(short)  # random weights: words are noise, the plumbing is real
        assert isinstance(result, Transcription)
        assert all(w.timing == "asr" and 0 <= w.start <= w.end for w in result.words)
        assert rec.describe().startswith(f"transformers:{kind}:")
    with pytest.raises(ModelError, match="config.json"):
        TransformersRecogniser(tiny_hf_models["wav2vec2"].parent)


def test_pocketsphinx_recogniser_on_real_speech(jfk):
    result = PocketsphinxRecogniser().recognise(jfk)
    assert len(result.words) >= 10
    assert all(w.timing == "asr" and 0 <= w.start < w.end <= jfk.duration + 0.01 for w in result.words)
    assert wer(JFK_TEXT, result.text) < 0.9
    utts = words_for(jfk, WordsConfig(asr_backend="pocketsphinx"), recogniser=FixedRecogniser(result)).utterances
    # pocketsphinx's own times are already frame-exact: no realignment, same words
    assert [w for u in utts for w in u.words] == result.words


def test_models_are_shared_and_the_stage_id_tracks_model_and_settings(whisper_base):
    base = WordsConfig(asr_model="base")
    a, b = make_recogniser(base), make_recogniser(dataclasses.replace(base, beam_size=1))
    assert a.model is b.model is whisper_base.model
    base_id = words_stage_id(base)
    assert base_id == words_stage_id(WordsConfig(asr_model="base"))
    assert BASE_SHA256[:16] in base_id and ":cpu-int8:" in base_id
    others = {
        words_stage_id(WordsConfig(asr_model="tiny.en")),
        words_stage_id(dataclasses.replace(base, beam_size=1)),
        words_stage_id(dataclasses.replace(base, realign=False)),
        words_stage_id(dataclasses.replace(base, utterance_gap_s=1.5)),
    }
    assert base_id not in others and len(others) == 4
    # "auto" is the English model for English and base for any other or detected language
    assert words_stage_id(WordsConfig()) == words_stage_id(WordsConfig(asr_model="tiny.en"))
    assert words_stage_id(WordsConfig(language="auto")) == words_stage_id(dataclasses.replace(base, language="auto"))
    assert words_stage_id(WordsConfig(), "hello there").startswith("transcript@")


def test_whisper_runs_where_it_can_with_the_arithmetic_that_suits_the_device(monkeypatch):
    """auto: the first CUDA GPU CTranslate2 sees (float16 there), else the CPU (int8); asking for
    a GPU that is not there is one clear error, not a crash inside CTranslate2."""
    import ctranslate2

    from pipeline.asr import whisper_compute_type, whisper_device

    monkeypatch.setattr(ctranslate2, "get_cuda_device_count", lambda: 0)
    assert whisper_device("auto") == ("cpu", 0) and whisper_device("cpu") == ("cpu", 0)
    with pytest.raises(ModelError, match=r"words.device=cuda:1: no such CUDA device"):
        whisper_device("cuda:1")
    monkeypatch.setattr(ctranslate2, "get_cuda_device_count", lambda: 2)
    assert whisper_device("auto") == ("cuda", 0) and whisper_device("cuda:1") == ("cuda", 1)
    assert whisper_compute_type("auto", "cpu") == "int8"
    assert whisper_compute_type("auto", "cuda") == "float16"
    assert whisper_compute_type("int8_float16", "cuda") == "int8_float16"
    with pytest.raises(ValueError, match="words.device must be auto, cpu, cuda or cuda:N"):
        WordsConfig(device="gpu")


def test_base_beside_tiny_en_is_kept_for_short_videos_and_freed_after_long_ones(jfk, monkeypatch):
    """tiny.en asks base for the language; after a long video base is not left loaded through
    the transcription (memory), after a short one it stays for the next video (speed)."""
    import pipeline.asr as asr_module

    cfg = WordsConfig(asr_model="tiny.en", compute_type="int8_float32")  # cache keys of its own
    rec = WhisperRecogniser(cfg)
    key = ("whisper", str(resolve_whisper("base").path), "cpu", 0, "int8_float32")
    monkeypatch.setattr(asr_module, "KEEP_DETECTOR_S", 5.0)  # jfk (11 s) counts as long
    assert rec.heard_language(jfk.floats)[0] == "en"
    assert core.models.loaded(key) is None
    monkeypatch.setattr(asr_module, "KEEP_DETECTOR_S", 600.0)
    assert rec.heard_language(jfk.floats)[0] == "en"
    assert core.models.loaded(key) is not None


@pytest.mark.parametrize("seconds", [0.03, 3.0, 30.0, 30.01, 77.7])
def test_blockwise_whisper_features_equal_faster_whispers_bit_for_bit(seconds):
    """The spectra are computed 30 s at a time to keep long audio's peak memory down; the
    features Whisper reads must not change by a bit, at block edges and across several blocks."""
    from faster_whisper.feature_extractor import FeatureExtractor

    from pipeline.whisper_features import BlockwiseFeatureExtractor

    speech = np.concatenate([load_audio(DATA / "speech" / name).floats[:]
                             for name in ("pyannote_sample.wav", "harvard_list1_16k.wav", "jfk.flac")] * 2)
    x = speech[: int(seconds * 16000)]
    reference = FeatureExtractor(feature_size=80)
    blockwise = BlockwiseFeatureExtractor.replacing(FeatureExtractor(feature_size=80))
    assert np.array_equal(blockwise(x), reference(x))
    assert np.array_equal(blockwise(x, chunk_length=15), reference(x, chunk_length=15))
    assert (blockwise.n_samples, blockwise.nb_max_frames) == (reference.n_samples, reference.nb_max_frames)


def test_loaded_whisper_uses_the_blockwise_features(whisper_base):
    from pipeline.whisper_features import BlockwiseFeatureExtractor

    assert isinstance(whisper_base.model.feature_extractor, BlockwiseFeatureExtractor)


def test_the_quick_language_look_answers_only_for_sure_expected_speech(german, jfk, monkeypatch):
    """The first 10 s of speech, unpadded, answer when they are surely the expected language;
    German, or too little speech, go to Whisper's full check, whose verdict is unchanged."""
    from faster_whisper import WhisperModel

    rec = WhisperRecogniser(WordsConfig(asr_model="tiny.en"))
    full_checks = []
    real = WhisperModel.detect_language

    def counted(self, *args, **kwargs):
        full_checks.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(WhisperModel, "detect_language", counted)
    language, p = rec.heard_language(jfk.floats, "en")
    assert language == "en" and p >= 0.8 and full_checks == []
    assert rec.heard_language(jfk.floats) == pytest.approx(("en", 0.935), abs=0.01)  # the full check
    assert len(full_checks) == 1
    assert rec.heard_language(german.floats, "en")[0] == "de" and len(full_checks) == 2
    assert rec.heard_language(german.floats, "en") == rec.heard_language(german.floats)
    half_second = Audio(jfk.samples[16000 : 16000 + 8000], 16000)
    assert rec.heard_language(half_second.floats, "en") == rec.heard_language(half_second.floats)
