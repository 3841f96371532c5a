"""Text extractors: sub-word pooling, windowing, the real MiniLM, local model folders, GloVe."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch

from core.config import TextConfig
from core.errors import ModelError
from core.records import Utterance, Word, WordFeatures
from extractors.base import Clip
from extractors.bert import BertEncoder, BertTokenizer, load_bert, plain_bert_config
from extractors.text import (
    TransformerTextExtractor,
    best_window,
    bundled_minilm_path,
    make_text_extractor,
    mean_pool_words,
    plan_windows,
)


def pair(features: WordFeatures) -> tuple[np.ndarray, np.ndarray]:
    return features.values, features.imputed


def make_clip(utterances: list[list[str]]) -> Clip:
    """Utterances as the words stage hands them over (times do not matter to text features)."""
    out, t = [], 0.0
    for u, words in enumerate(utterances):
        ws = []
        for w in words:
            ws.append(Word(w, t, t + 0.3))
            t += 0.4
        out.append(Utterance(u, tuple(ws)))
    return Clip(path="test-clip", info=None, audio=None, utterances=out)


@pytest.fixture(scope="module")
def mosi_sentences(data_dir) -> list[list[str]]:
    with open(data_dir / "mosi" / "mosi_text_trainval.csv", newline="") as fh:
        return [row["text"].split() for row in csv.DictReader(fh)]


@pytest.fixture(scope="module")
def jfk_words(data_dir) -> list[str]:
    return (data_dir / "speech" / "jfk.txt").read_text().split()


@pytest.fixture(scope="module")
def minilm() -> TransformerTextExtractor:
    return TransformerTextExtractor(TextConfig())


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# ----------------------------------------------------------------------------- pure functions


def test_mean_pool_words_averages_each_words_subwords():
    hidden = np.array(
        [[9.0, 9.0], [1.0, 2.0], [3.0, 4.0], [5.0, 8.0], [7.0, 7.0], [0.0, 0.0]], np.float32
    )  # [CLS] w0 w1a w1b [SEP] [PAD]
    word_ids = [None, 0, 1, 1, None, None]
    vectors, counts = mean_pool_words(hidden, word_ids, n_words=3)
    np.testing.assert_array_equal(vectors, [[1.0, 2.0], [4.0, 6.0], [0.0, 0.0]])
    assert counts.tolist() == [1, 2, 0]
    assert vectors.dtype == np.float32
    with pytest.raises(ValueError):
        mean_pool_words(hidden, [None, 0, 3, 1, None, None], n_words=3)
    with pytest.raises(ValueError):
        mean_pool_words(hidden, [None, 0], n_words=1)


def test_plan_windows_cover_every_word_within_budget_and_overlap():
    counts = [1, 3, 2, 1, 1, 4, 2, 2, 1, 3, 1, 1, 2, 2, 1, 1, 3, 1]
    budget = 8
    windows = plan_windows(counts, budget)
    assert windows[0][0] == 0 and windows[-1][1] == len(counts)
    for (s0, e0), (s1, e1) in zip(windows, windows[1:]):
        assert s0 < s1 < e0 <= e1  # moves on and overlaps its predecessor
    for s, e in windows:
        assert sum(counts[s:e]) <= budget
    pick = best_window(windows, len(counts))
    for j, k in enumerate(pick):
        s, e = windows[k]
        assert s <= j < e
    # A middle word is taken from a window where it is not at a cut.
    j = len(counts) // 2
    s, e = windows[pick[j]]
    assert s < j < e - 1


def test_plan_windows_short_and_oversized_words():
    assert plan_windows([2, 2, 2], budget=10) == [(0, 3)]
    assert plan_windows([], budget=10) == []
    windows = plan_windows([2, 50, 2, 2], budget=6)
    assert (1, 2) in windows  # a word longer than the budget gets a window of its own
    assert {j for s, e in windows for j in range(s, e)} == {0, 1, 2, 3}


# ----------------------------------------------------------------------------- MiniLM


def test_minilm_on_real_utterances(minilm, mosi_sentences, jfk_words):
    utterances = [jfk_words, *mosi_sentences[:12]]
    clip = make_clip(utterances)
    n = sum(len(u) for u in utterances)
    values, imputed = pair(minilm.extract(clip))
    assert values.shape == (n, 384) and values.dtype == np.float32
    assert np.isfinite(values).all() and (np.abs(values).sum(axis=1) > 0).all()
    assert not imputed.any()
    assert minilm.feature_names == [f"text_{i}" for i in range(384)]
    assert (minilm.name, minilm.feature_dim) == ("hf:all-MiniLM-L6-v2", 384)
    again = minilm.extract(clip).values
    np.testing.assert_array_equal(again, values)  # deterministic


def test_split_word_gets_the_mean_of_its_subword_states(minilm, mosi_sentences):
    """Recompute one utterance by hand: tokenizer + model + mean of the word's token rows."""
    import torch

    words = next(s for s in mosi_sentences if len(minilm.tokenizer.tokenize(s[-1])) == 1 and any(
        len(minilm.tokenizer.tokenize(w)) > 1 for w in s))
    j = next(i for i, w in enumerate(words) if len(minilm.tokenizer.tokenize(w)) > 1)
    # Batched with other utterances, as the pipeline runs it.
    values, _ = pair(minilm.extract(make_clip([mosi_sentences[0], words, mosi_sentences[2]])))
    mine = values[len(mosi_sentences[0]) + j]
    enc = minilm.tokenizer([words], is_split_into_words=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = minilm.model(**enc).last_hidden_state[0].numpy()
    rows = [t for t, w in enumerate(enc.word_ids(0)) if w == j]
    assert len(rows) > 1
    np.testing.assert_allclose(mine, hidden[rows].mean(axis=0), atol=1e-5)


def test_vectors_are_contextual(minilm, mosi_sentences):
    with_really = [s for s in mosi_sentences if "really" in s][:2]
    clip = make_clip([
        *with_really,
        "the movie was great".split(),
        "the movie was terrible".split(),
        "the movie was great".split(),
    ])
    values = minilm.extract(clip).values
    offsets = np.cumsum([0] + [len(u.words) for u in clip.utterances])
    really = [offsets[k] + with_really[k].index("really") for k in range(2)]
    assert cosine(values[really[0]], values[really[1]]) < 0.99  # same word, other sentence
    great, terrible, great2 = offsets[2] + 3, offsets[3] + 3, offsets[4] + 3
    assert cosine(values[great], values[terrible]) < 0.9
    np.testing.assert_allclose(values[great], values[great2], atol=1e-5)  # same context, same vector
    assert not np.allclose(values[offsets[2]], values[offsets[3]], atol=1e-3)  # "the" hears the end


def test_long_utterance_is_windowed_and_every_word_gets_a_vector(minilm, mosi_sentences):
    words = [w for s in mosi_sentences for w in s][:600]
    assert len(minilm.tokenizer([words], is_split_into_words=True, verbose=False)["input_ids"][0]) > 512
    calls = []
    values, imputed = pair(minilm.extract(make_clip([words]), progress=lambda stage, d, t: calls.append((d, t))))
    assert values.shape == (600, 384)
    assert np.isfinite(values).all() and (np.abs(values).sum(axis=1) > 0).all() and not imputed.any()
    assert calls[-1][0] == calls[-1][1] >= 3  # several windows were encoded


def test_small_windows_stay_close_to_full_context(minilm, mosi_sentences):
    words = [w for s in mosi_sentences[:40] for w in s][:120]
    full = minilm.encode_words([words])[0]
    windowed_ex = TransformerTextExtractor(TextConfig(max_tokens=64))
    assert windowed_ex.max_len == 64
    windowed = windowed_ex.encode_words([words])[0]
    cos = (full * windowed).sum(1) / np.linalg.norm(full, axis=1) / np.linalg.norm(windowed, axis=1)
    assert cos.mean() > 0.75  # measured 0.86; a window without context on one side would drop far


def test_word_without_subwords_gets_the_unknown_tokens_vector_and_a_flag(minilm):
    words = ["you", "\u200b", "can", "\u0301", "do"]  # zero-width space, lone combining accent
    values, imputed = pair(minilm.extract(make_clip([words])))
    assert imputed.tolist() == [False, True, False, True, False]
    assert np.isfinite(values).all() and (np.abs(values).sum(axis=1) > 0).all()
    spelled_unk = minilm.extract(make_clip([["you", "[UNK]", "can", "[UNK]", "do"]])).values
    np.testing.assert_allclose(values, spelled_unk, atol=1e-5)


def test_empty_clip_gives_an_empty_matrix(minilm):
    values, imputed = pair(minilm.extract(make_clip([])))
    assert values.shape == (0, 384) and imputed.shape == (0,)


# ----------------------------------------------------------------------------- other model folders


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory, minilm):
    """A 2-layer, 32-d BERT with the MiniLM vocabulary and only 64 positions."""
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("models") / "tiny-bert"
    config = BertConfig(
        vocab_size=minilm.tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(folder)
    copy_tokenizer(folder)
    return folder


def test_tiny_local_bert_folder_works_via_model_path(tiny_bert, minilm, mosi_sentences):
    ex = make_text_extractor(TextConfig(model_path=str(tiny_bert)))
    assert isinstance(ex, TransformerTextExtractor)
    assert ex.feature_dim == 32 and ex.feature_names[-1] == "text_31"
    assert ex.name == "hf:tiny-bert" and ex.version != minilm.version
    assert ex.max_len == 64  # capped by the model's position table, not max_tokens=256
    words = [w for s in mosi_sentences for w in s][:100]
    values, imputed = pair(ex.extract(make_clip([words, mosi_sentences[0]])))
    assert values.shape == (100 + len(mosi_sentences[0]), 32)
    assert np.isfinite(values).all() and (np.abs(values).sum(axis=1) > 0).all() and not imputed.any()
    again = TransformerTextExtractor(TextConfig(model_path=str(tiny_bert)))
    assert again.model is ex.model  # loaded once per process


def copy_tokenizer(folder) -> None:
    """The bundled MiniLM's tokenizer files, for a test model with its vocabulary."""

    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copyfile(bundled_minilm_path() / name, folder / name)


def _states_both_ways(folder, batches: list[list[list[str]]]) -> list[tuple]:
    """Last hidden states of each batch from mmpipe's BERT and tokenizer and from transformers'
    BertModel and AutoTokenizer (whose tokens must be the same)."""
    import torch
    from transformers import AutoTokenizer, BertModel


    ours, our_tokenizer = load_bert(folder, plain_bert_config(folder)), BertTokenizer(folder)
    theirs = BertModel.from_pretrained(folder, local_files_only=True, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    out = []
    for batch in batches:
        kwargs = dict(is_split_into_words=True, padding=True, truncation=True,
                      max_length=theirs.config.max_position_embeddings, return_tensors="pt")
        enc, our_enc = tokenizer(batch, **kwargs), our_tokenizer(batch, **kwargs)
        assert set(enc) == set(our_enc) and all(torch.equal(enc[k], our_enc[k]) for k in enc)
        assert all(enc.word_ids(i) == our_enc.word_ids(i) for i in range(len(batch)))
        with torch.inference_mode():
            out.append((ours(**our_enc).last_hidden_state, theirs(**enc).last_hidden_state))
    return out


def test_plain_bert_tokenizer_gives_transformers_tokens(minilm, mosi_sentences):
    """The calls the extractor makes, on every MOSI sentence: the same ids and word ids as
    transformers' tokenizer, with and without special tokens, padding and truncation."""
    from transformers import AutoTokenizer


    assert isinstance(minilm.tokenizer, BertTokenizer)
    theirs = AutoTokenizer.from_pretrained(bundled_minilm_path(), local_files_only=True)
    odd = [["naïve", "café", "Schrödinger's", "42%", "U.S.A.", "\u00a0", "", "🙂"], ["x"] * 700]
    for kwargs in ({"add_special_tokens": False}, {}, {"truncation": True, "max_length": 40},
                   {"padding": True, "truncation": True, "max_length": 512}):
        for batch in (mosi_sentences, odd):
            a = theirs(batch, is_split_into_words=True, verbose=False, **kwargs)
            b = minilm.tokenizer(batch, is_split_into_words=True, verbose=False, **kwargs)
            assert a["input_ids"] == b["input_ids"] and a["attention_mask"] == b["attention_mask"]
            assert a["token_type_ids"] == b["token_type_ids"]
            assert all(a.word_ids(i) == b.word_ids(i) for i in range(len(batch)))
    for name in ("unk_token", "unk_token_id", "model_max_length", "vocab_size"):
        assert getattr(theirs, name) == getattr(minilm.tokenizer, name), name
    assert theirs.num_special_tokens_to_add(pair=False) == minilm.tokenizer.num_special_tokens_to_add(pair=False)
    assert all(theirs.tokenize(w) == minilm.tokenizer.tokenize(w) for w in ("unbelievably", "naïve", "42%"))


def test_plain_bert_gives_transformers_states_bit_for_bit(minilm, tiny_bert, mosi_sentences):
    """The default MiniLM (and any plain BERT) runs on mmpipe's own encoder, so loading it does not
    import transformers; its states are BertModel's to the bit, padded or not."""

    assert isinstance(minilm.model, BertEncoder)
    batches = [mosi_sentences[i:i + n] for n in (1, 4, 16) for i in range(0, 32, n)]
    batches.append([["movie"] * 600])  # truncated to the full 512 positions
    for folder in (bundled_minilm_path(), tiny_bert):
        for ours, theirs in _states_both_ways(folder, batches):
            assert ours.shape == theirs.shape and torch.equal(ours, theirs)


def test_bert_saved_from_a_task_model_and_bad_weights(tmp_path, minilm, mosi_sentences):
    """A checkpoint saved from BertForMaskedLM ("bert." names, an MLM head) gives the encoder's
    states; one missing a tensor is refused with the tensor's name, never half loaded."""
    from safetensors.torch import load_file, save_file
    from transformers import BertConfig, BertForMaskedLM

    folder = tmp_path / "mlm-bert"
    config = BertConfig(vocab_size=minilm.tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    BertForMaskedLM(config).save_pretrained(folder)
    copy_tokenizer(folder)
    for ours, theirs in _states_both_ways(folder, [mosi_sentences[:3]]):
        assert torch.equal(ours, theirs)

    tensors = load_file(str(folder / "model.safetensors"))
    del tensors["bert.encoder.layer.1.output.dense.weight"]
    save_file(tensors, str(folder / "model.safetensors"))
    with pytest.raises(ModelError, match="weights do not fit a BERT encoder.*layer.1.output.dense.weight") as err:
        TransformerTextExtractor(TextConfig(model_path=str(folder)))
    assert "\n" not in str(err.value)


def test_a_bert_tokenizer_config_that_changes_the_normalizer_goes_to_transformers(tmp_path, tiny_bert):
    """A tokenizer_config.json asking for cased text over a lower-casing tokenizer.json is what
    transformers' tokenizer would rewrite: such a folder runs on transformers, not on ours."""

    folder = tmp_path / "cased"
    shutil.copytree(tiny_bert, folder)
    settings = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**settings, "do_lower_case": False}))
    ex = TransformerTextExtractor(TextConfig(model_path=str(folder)))
    assert not isinstance(ex.tokenizer, BertTokenizer) and not isinstance(ex.model, BertEncoder)
    assert isinstance(TransformerTextExtractor(TextConfig(model_path=str(tiny_bert))).model, BertEncoder)


def test_tiny_local_roberta_marks_word_starts(tmp_path):
    """Byte-level BPE needs add_prefix_space for pre-split words; the loader asks for it."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizer

    folder = tmp_path / "tiny-roberta"
    folder.mkdir()
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        ["the movie was great and the acting was terrible but i liked it"] * 10, vocab_size=300,
        min_frequency=1, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"], show_progress=False,
    )
    bpe.save_model(str(folder))
    vocab = json.loads((folder / "vocab.json").read_text())
    merges = [tuple(line.split()) for line in (folder / "merges.txt").read_text().splitlines()[1:] if line]
    RobertaTokenizer(vocab=vocab, merges=merges).save_pretrained(folder)
    config = RobertaConfig(
        vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=40,
    )
    RobertaModel(config).save_pretrained(folder)

    ex = TransformerTextExtractor(TextConfig(model_path=str(folder)))
    tokens = ex.tokenizer.convert_ids_to_tokens(
        ex.tokenizer([["the", "movie"]], is_split_into_words=True, add_special_tokens=False)["input_ids"][0]
    )
    assert tokens[0].startswith("\u0120") and tokens[1].startswith("\u0120")  # "Ġthe", "Ġmo..."
    assert ex.max_len == 38  # positions start after the padding index
    words = ("the movie was great and the acting was terrible but i liked it " * 5).split()
    values, imputed = pair(ex.extract(make_clip([words])))
    assert values.shape == (len(words), 16) and np.isfinite(values).all() and not imputed.any()


def test_bad_model_paths_raise_model_error(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(ModelError, match="text model folder not found") as err:
        TransformerTextExtractor(TextConfig(model_path=str(missing)))
    assert str(missing) in str(err.value) and "\n" not in str(err.value)

    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "config.json").write_text("{ this is not json")
    with pytest.raises(ModelError, match="cannot load text model") as err:
        TransformerTextExtractor(TextConfig(model_path=str(garbage)))
    assert "\n" not in str(err.value)

    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelError, match="cannot load text model"):
        TransformerTextExtractor(TextConfig(model_path=str(no_weights)))

    with pytest.raises(ModelError, match="max_tokens=2 leaves no room"):
        TransformerTextExtractor(TextConfig(max_tokens=2))

    with pytest.raises(ModelError, match="unknown text backend 'word2vec'"):
        make_text_extractor(TextConfig(backend="word2vec"))
