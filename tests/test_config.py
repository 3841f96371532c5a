"""The one typed configuration: sections, dotted overrides, JSON files, and values no stage
could use refused up front with the setting's name."""

from __future__ import annotations

import json

import pytest

from core.config import ExtractConfig, resolve_config
from core.errors import InputError


def test_resolve_config_accepts_sections_dotted_keys_and_files(tmp_path):
    cfg = resolve_config({"facial": {"fps": 4.0}, "words.asr_model": "tiny.en"})
    assert cfg.facial.fps == 4.0 and cfg.words.asr_model == "tiny.en"
    (tmp_path / "c.json").write_text(json.dumps({"acoustic": {"pitch": "pyin"}}))
    assert resolve_config(tmp_path / "c.json").acoustic.pitch == "pyin"
    with pytest.raises(InputError, match="bad extraction config"):
        resolve_config({"facial.nope": 1})
    with pytest.raises(InputError, match="config file not found"):
        resolve_config(tmp_path / "missing.json")
    # Values no stage can use are refused up front, naming the setting.
    for bad, message in [({"facial.fps": 0}, "facial.fps must be positive"),
                         ({"words.beam_size": 0}, "words.beam_size must be at least 1"),
                         ({"facial": {"streams": 0}}, "facial.streams must be at least 1"),
                         ({"facial.frames": "some"}, "facial.frames must be 'words' or 'all'"),
                         ({"facial.max_faces": 0}, "facial.max_faces must be between 1 and 16"),
                         ({"facial.speaker_window_s": 0}, "facial.speaker_window_s must be positive"),
                         ({"acoustic.pitch": "crepe"}, "acoustic.pitch must be yin or pyin"),
                         ({"text.backend": "word2vec"}, "text.backend must be transformer or glove")]:
        with pytest.raises(InputError, match=message):
            resolve_config(bad)


def test_the_hash_follows_every_setting_and_nothing_else():
    base = ExtractConfig()
    assert base.hash() == ExtractConfig().hash()
    assert base.with_overrides({"facial.fps": 5.0}).hash() != base.hash()
    assert base.with_overrides({"facial.fps": None}).hash() == base.hash()  # None means "unchanged"
    assert ExtractConfig.from_dict(base.to_dict()).hash() == base.hash()
