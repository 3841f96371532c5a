"""One module per modality under one contract (``extractors/base.py``), found through this
registry keyed by modality (the Parquet column each fills).

Adding a modality is a new module with an ``Extractor`` subclass, a config section for it
(``core/config.py``) and its line here; the pipeline asks the registry for every modality and
treats them alike. Extractors depend only on the plain records in ``core``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.config import ExtractConfig
from core.models import cached
from extractors.acoustic import AcousticExtractor
from extractors.base import Clip, Extractor, FrameExtractor, WordExtractor
from extractors.facial import FacialExtractor
from extractors.text import make_text_extractor


@dataclass(frozen=True)
class Registered:
    section: str  # the config section that configures it ("acoustic" settings make "audio" features)
    build: Callable[[Any], Extractor]  # section settings -> extractor


EXTRACTORS: dict[str, Registered] = {
    "text": Registered("text", make_text_extractor),
    "audio": Registered("acoustic", AcousticExtractor),
    "vision": Registered("facial", FacialExtractor),
}


def extractor_for(modality: str, config: ExtractConfig) -> Extractor:
    """The extractor of ``modality`` for ``config``, built once per process and settings of its
    own section (changing the face rate does not reload the text model)."""
    entry = EXTRACTORS[modality]
    settings = getattr(config, entry.section)
    key = ("extractor", modality, json.dumps(dataclasses.asdict(settings), sort_keys=True))
    return cached(key, lambda: entry.build(settings))


__all__ = ["EXTRACTORS", "Clip", "Extractor", "FrameExtractor", "Registered", "WordExtractor", "extractor_for"]
