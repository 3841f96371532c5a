"""The application layer: every entry point a user runs.

- ``flows.cli``: the ``mmpipe`` command line, one module per command group;
- the Prefect flows ``extract-video``, ``backfill``, ``train`` and ``score`` (``flows/extract.py``,
  ``backfill.py``, ``train.py``, ``score.py``), their deployments (``deployments.py``, and
  ``prefect.yaml`` at the repository root) and how they run tasks (``runtime.py``, ``gpu.py``,
  ``lifetime.py``);
- ``flows.environment``: the process set-up entry points do before any work;
- ``flows.warmup``: the set-up step that prepares models and caches once per machine.

Nothing here holds logic of its own: anything a flow or a command does, a plain call into
``mmlatch`` (the model side) or ``pipeline`` (extraction) can do; this layer adds parsing,
printing, progress, retries, concurrency, artifacts and GPU slots. Nothing below imports it.
"""
