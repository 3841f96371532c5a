"""Extraction settings as command-line flags: one table shared by every command that extracts
(``extract``, ``score``, ``backfill``), mapped onto the one typed config."""

from __future__ import annotations

import argparse
from pathlib import Path

from core.config import ExtractConfig, resolve_config
from core.errors import MmpipeError

# Flag -> dotted config key.
CONFIG_FLAGS: dict[str, tuple[str, type, str]] = {
    "--asr-backend": ("words.asr_backend", str, "recogniser when no transcript: whisper | pocketsphinx | transformers"),
    "--asr-model": ("words.asr_model", str, "Whisper model: auto (tiny.en for English, else base) | base | tiny.en | PATH to a local model folder"),
    "--asr-beam": ("words.beam_size", int, "Whisper beam size (5; 1 = greedy, faster)"),
    "--language": ("words.language", str, "spoken language (en), or auto to detect"),
    "--utterance-gap": ("words.utterance_gap_s", float, "pause (s) that ends an utterance"),
    "--text-backend": ("text.backend", str, "transformer | glove"),
    "--text-model": ("text.model_path", str, "local Hugging Face encoder folder (default: MiniLM)"),
    "--pitch": ("acoustic.pitch", str, "pitch tracker: yin (fast) | pyin"),
    "--face-fps": ("facial.fps", float, "face frames analysed per second of video"),
    "--face-model": ("facial.model_path", str, "MediaPipe face_landmarker.task file"),
    "--face-frames": ("facial.frames", str, "words: landmark only the frames the words read (default) | all"),
}


def add_config_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("extraction settings")
    group.add_argument("--config", type=Path, help="JSON file with extraction settings")
    for flag, (key, kind, help_text) in CONFIG_FLAGS.items():
        group.add_argument(
            flag, dest="cfg__" + key.replace(".", "__"), type=kind, help=help_text,
            metavar=key.split(".")[-1].upper(),
        )


def config_from_args(args: argparse.Namespace) -> ExtractConfig:
    config = resolve_config(getattr(args, "config", None))
    overrides = {
        key: getattr(args, "cfg__" + key.replace(".", "__"), None) for key, _, _ in CONFIG_FLAGS.values()
    }
    try:
        return config.with_overrides(overrides)
    except (ValueError, TypeError) as err:
        raise MmpipeError(str(err)) from None
