"""Extraction: a video (or a folder of them) -> word-aligned multimodal features in Parquet.

The data flow, one module per step: ``media`` (decode) -> ``words`` (``asr`` recognition or a
``transcripts`` file, ``aligner`` forced alignment) -> ``utterances`` -> the modality
extractors (``extractors/``, below this package) -> ``align`` (pooling frames over words) ->
``store`` (``schema``, ``names``, ``claims``: the Parquet feature store). ``extract`` does one
video, ``backfill`` a folder. Importing any of it only defines things.
"""
