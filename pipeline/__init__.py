"""Extraction: a video (or a folder of them) -> word-aligned multimodal features in Parquet.

The data flow, one module per step: ``media`` (decode; ``signal``: 16 kHz speech in 10 ms frames
and which frames are speech) -> ``words`` (``asr`` recognition with ``whisper_weights``, or a
``transcripts`` file; ``spoken`` forms and ``pronunciation`` for ``forced_alignment``) ->
``utterances`` -> the modality extractors (``extractors/``, the layer below) -> ``pooling``
(frames averaged over words) -> ``store`` (``schema``, ``names``, ``claims``: the Parquet
feature store). ``extract`` does one video, ``backfill`` a folder (``outcomes`` records what
became of each video). Importing any of it only defines things.
"""
