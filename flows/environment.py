"""Process set-up that belongs to the entry points (the CLI, the set-up step, scripts), never to
an import: mmpipe's library modules only define things.

- ``prepare_process``: model hubs are never asked (every model comes from a package), librosa's
  compiled numba code is cached in mmpipe's own cache folder (so it is compiled once per
  machine, ~30 s, not once per process), MediaPipe's C++ logging stays quiet, and the allocator
  hands freed memory back to the system (``core.memory``). Child processes inherit the settings.
- ``prepare_prefect``: settings Prefect reads when it is first imported.
- ``quiet_library_warnings``: warnings the user cannot act on, silenced by category *and* module.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from core.config import cache_dir
from core.memory import tune_allocator

DASHBOARD_ENV = "MMPIPE_DASK_DASHBOARD"  # where a local Dask cluster's dashboard listens


def prepare_process() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("NUMBA_CACHE_DIR", str(cache_dir() / "numba"))
    os.environ.setdefault("GLOG_minloglevel", "2")  # MediaPipe / TFLite C++ logs
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    tune_allocator()  # long videos go block by block: freed blocks go back to the system


def prepare_prefect(quiet: bool = False) -> None:
    """Decide Prefect's settings before it is imported (it reads them once)."""
    if quiet:
        os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
    os.environ.setdefault("DASK_DISTRIBUTED__LOGGING__DISTRIBUTED", "warning")
    # The embedded server must not try to phone home from an offline machine (it logs an error
    # per attempt otherwise).
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # The embedded API gets 20 s to start by default; on a loaded 2-core machine its first start
    # (database creation, migrations) can take longer and the whole run would fail.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    # Prefect creates its home folder without parents; a project-local PREFECT_HOME such as
    # ``.cache/prefect`` in a fresh checkout would leave the embedded server without a database.
    if os.environ.get("PREFECT_HOME"):
        Path(os.environ["PREFECT_HOME"]).expanduser().mkdir(parents=True, exist_ok=True)


# (category, module regex) of warnings that third-party libraries raise on ordinary input and
# that say nothing a user of mmpipe could act on.
LIBRARY_WARNINGS: tuple[tuple[type[Warning], str], ...] = (
    (UserWarning, r"librosa(\.|$)"),
    (FutureWarning, r"librosa(\.|$)"),
    (UserWarning, r"torch(\.|$)"),
    (FutureWarning, r"transformers(\.|$)"),
    (UserWarning, r"transformers(\.|$)"),
    (UserWarning, r"google\.protobuf(\.|$)"),
    (UserWarning, r"faster_whisper(\.|$)"),
)


def quiet_library_warnings() -> None:
    for category, module in LIBRARY_WARNINGS:
        warnings.filterwarnings("ignore", category=category, module=module)
