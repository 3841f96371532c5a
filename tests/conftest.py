"""Shared fixtures: the real test media in ../shared/data and a project-local PREFECT_HOME."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flows.environment import prepare_prefect, prepare_process

ROOT = Path(__file__).resolve().parents[1]
DATA = (ROOT / ".." / "shared" / "data").resolve()
VIDEOS = DATA / "videos"
SPEECH = DATA / "speech"

os.environ.setdefault("PREFECT_HOME", str(ROOT / ".cache" / "prefect-test"))
prepare_process()  # the test run is an entry point like the CLI: offline hubs, numba's cache
prepare_prefect()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.exists():
        pytest.fail(f"test media not found at {DATA} (see ../shared/data/README.md)")
    return DATA


@pytest.fixture(scope="module")
def torch_one_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared 2-core box they lose 10x.
    Modules that train or score tiny models use it (``pytestmark``); the setting is restored."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
