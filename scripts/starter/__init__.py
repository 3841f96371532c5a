"""The one-off builder of the starter model's training data, used by ``scripts/train_starter.py``
to rebuild the checkpoint shipped in ``mmlatch/starter/``. It lives beside that script, not in
the installed package: scoring and training never need it, only a rebuild of the starter does.

No labelled video corpus can be had here, so the starter model learns from labelled *text*
(SST-5 movie-review sentences and the CMU-MOSI spoken-opinion transcripts) and every sentence is
turned into something that looks like an extracted video:

- text: the sentence's words through the real text extractor (contextual MiniLM vectors);
- audio: the sentence spoken by espeak-ng (in process, through ``libespeak-ng``; its word events
  give the word timings, so no aligner is needed), with a random voice, rate, pitch, gain and a
  little background noise, through the real acoustic extractor and ``pipeline.pooling``;
- vision: a random window of a random real face recording, through the real facial extractor,
  pooled over the sentence's word timings with ``pipeline.pooling.pool_to_words``.

The features therefore carry sentiment only in the words, while the model still sees real voice
and face statistics (and learns to tolerate them). Everything expensive is cached under
``cache_dir()/starter`` keyed by the sentence text and the extractor identities, so a rerun only
rebuilds what changed. The output is an ordinary feature store (same ``FeatureSchema`` as
``mmpipe extract`` writes with the default config) plus a labels table, so the ordinary trainer
reads it.

One module per job, in the order a build uses them:

- ``sst``: the labelled sentences (SST trees, CMU-MOSI transcripts) and the label mapping;
- ``keys``: seeds and cache keys that are the same in every process and every run;
- ``speech``: espeak-ng in process, the voices, and word timings from its word events;
- ``cache``: the per-sentence cache of speech and features, filled by a pool of processes;
- ``faces``: the face tracks of real recordings and the windows cut from them;
- ``store``: the corpus by role, and the feature store and labels tables the trainer reads.
"""
