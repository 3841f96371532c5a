"""The model side: the feature store -> the MMLatch model -> scores.

``data`` turns the store (through ``pipeline.store``) and a ``labels`` table into padded batches;
``model`` is the MMLatch network in one file; ``train``, ``evaluate`` and ``metrics`` follow the
reference recipe; ``checkpoint`` saves and strictly loads self-describing checkpoints (the
starter model lives in ``mmlatch/starter/``); ``inference`` predicts in batches for all of them;
``score`` is the one scoring path (videos or feature files -> per-utterance and per-video
scores), ``explain`` says why (word contributions, top-down masks) and ``report`` renders it as
one HTML page; ``cmu`` imports the CMU-MOSI/MOSEI releases into the same store. It imports
``pipeline`` and ``core`` below it, never ``flows`` above.
"""
