"""The feature store's schema: the contract between extraction (or CMU import) and the model.

One Parquet file per video, one row per word:

    video_id        string
    utterance_id    int32     utterance number within the video (0-based)
    word_index      int32     word number within the utterance (0-based)
    word            string
    start, end      float64   seconds
    timing          string    aligned | asr | interpolated | imported
    text            fixed_size_list<float32>[D_text]
    audio           fixed_size_list<float32>[D_audio]
    vision          fixed_size_list<float32>[D_vision]
    text_imputed, audio_imputed, vision_imputed   bool   no real input covered this word
    face_track          int32     identity of the face the vision features come from; -1 none
    faces_in_frame      int32     most faces seen in one frame during the word
    speaker_confidence  float32   how clearly that face won the speaker choice (0..1)
    face_box            fixed_size_list<float32>[4]   its mean box x0, y0, x1, y1 (fractions)

The four face columns are null where the producer did not record faces (imported features).

The key ``mmpipe`` of the Parquet schema metadata holds JSON: schema version, the video's
identity (path, content hash, duration), per-modality extractor name/version/dim/feature names,
the full extraction config and its hash. ``FeatureSchema`` is the part a model depends on: it is
stored in every checkpoint and compared at load time.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa

SCHEMA_VERSION = 1
METADATA_KEY = b"mmpipe"
MODALITIES = ("text", "audio", "vision")
ID_COLUMNS = ("video_id", "utterance_id", "word_index", "word", "start", "end", "timing")
FACE_COLUMNS = ("face_track", "faces_in_frame", "speaker_confidence", "face_box")


def imputed_column(modality: str) -> str:
    return f"{modality}_imputed"


@dataclass(frozen=True)
class ModalitySpec:
    extractor: str
    version: str
    dim: int
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.names and len(self.names) != self.dim:
            raise ValueError(f"{self.extractor}: {len(self.names)} names for dim {self.dim}")


@dataclass(frozen=True)
class FeatureSchema:
    """What a model needs to know about its inputs."""

    modalities: dict[str, ModalitySpec]
    config_hash: str = ""

    @property
    def dims(self) -> dict[str, int]:
        return {m: self.modalities[m].dim for m in MODALITIES}

    def to_dict(self) -> dict[str, Any]:
        return {
            "modalities": {m: {**asdict(s), "names": list(s.names)} for m, s in self.modalities.items()},
            "config_hash": self.config_hash,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FeatureSchema":
        mods = {
            m: ModalitySpec(
                extractor=s["extractor"], version=str(s["version"]), dim=int(s["dim"]),
                names=tuple(s.get("names") or ()),
            )
            for m, s in data["modalities"].items()
        }
        missing = [m for m in MODALITIES if m not in mods]
        if missing:
            raise ValueError(f"feature schema lacks modalities: {', '.join(missing)}")
        return cls(modalities=mods, config_hash=data.get("config_hash", ""))

    def differences(self, other: "FeatureSchema") -> list[str]:
        """Human-readable reasons why features of ``other`` cannot feed a model built on self."""
        out = []
        for m in MODALITIES:
            a, b = self.modalities[m], other.modalities[m]
            if a.dim != b.dim:
                out.append(f"{m} has dim {b.dim}, model expects {a.dim}")
            if (a.extractor, a.version) != (b.extractor, b.version):
                out.append(f"{m} comes from {b.extractor} v{b.version}, model expects {a.extractor} v{a.version}")
            elif a.dim == b.dim and a.names and b.names and a.names != b.names:
                out.append(f"{m} feature names differ from the model's")
        return out


@dataclass
class StoreMetadata:
    schema: FeatureSchema
    video: dict[str, Any] = field(default_factory=dict)  # video_id, path, sha256, duration_s
    config: dict[str, Any] = field(default_factory=dict)  # full extraction config
    summary: dict[str, Any] = field(default_factory=dict)  # words, utterances, coverage, timings
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> str:
        return json.dumps(
            {
                "schema_version": self.schema_version,
                **self.schema.to_dict(),
                "video": self.video,
                "config": self.config,
                "summary": self.summary,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> "StoreMetadata":
        data = json.loads(text)
        version = int(data.get("schema_version", 0))
        if version != SCHEMA_VERSION:
            raise ValueError(f"feature file has schema version {version}, this mmpipe reads {SCHEMA_VERSION}")
        return cls(
            schema=FeatureSchema.from_dict(data),
            video=data.get("video", {}),
            config=data.get("config", {}),
            summary=data.get("summary", {}),
            schema_version=version,
        )


def arrow_schema(meta: StoreMetadata) -> pa.Schema:
    fields = [
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("utterance_id", pa.int32(), nullable=False),
        pa.field("word_index", pa.int32(), nullable=False),
        pa.field("word", pa.string(), nullable=False),
        pa.field("start", pa.float64(), nullable=False),
        pa.field("end", pa.float64(), nullable=False),
        pa.field("timing", pa.string(), nullable=False),
    ]
    for m in MODALITIES:
        fields.append(pa.field(m, pa.list_(pa.float32(), meta.schema.modalities[m].dim), nullable=False))
    for m in MODALITIES:
        fields.append(pa.field(imputed_column(m), pa.bool_(), nullable=False))
    fields += [
        pa.field("face_track", pa.int32()),
        pa.field("faces_in_frame", pa.int32()),
        pa.field("speaker_confidence", pa.float32()),
        pa.field("face_box", pa.list_(pa.float32(), 4)),
    ]
    return pa.schema(fields, metadata={METADATA_KEY: meta.to_json().encode()})
