"""One GPU step at a time per device, across every worker and flow run that shares a Prefect
server: a global concurrency limit of 1 named after the device. CPU machines skip it.

Two extractions or a training run beside a scoring run on the same card would not run faster,
only risk running out of GPU memory; parallel workers still overlap their CPU stages.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import threading
from contextlib import contextmanager, nullcontext
from functools import lru_cache
from typing import Iterator

LIMIT_PREFIX = "mmpipe-gpu-"
AUTO = "auto"


@lru_cache(maxsize=1)
def visible_gpu() -> str | None:
    """A stable key for the CUDA device this process would use, or None without one.

    The key is the card's UUID where torch reports it (the same card seen from two processes
    with different CUDA_VISIBLE_DEVICES gets one key), else host + index.
    """
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return None
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    index = torch.cuda.current_device()
    uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
    key = str(uuid) if uuid else f"{socket.gethostname()}-{index}"
    return re.sub(r"[^A-Za-z0-9-]+", "-", key).strip("-").lower()


def limit_name(device_key: str) -> str:
    return LIMIT_PREFIX + device_key


_limits_ready: set[str] = set()
_limits_lock = threading.Lock()


def ensure_limit(name: str) -> None:
    """Create the limit (1 slot) on first use so no setup step can be forgotten. Workers race
    to create it; losing the race is fine."""
    if name in _limits_ready:
        return
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectAlreadyExists, PrefectHTTPStatusError

    with _limits_lock:
        if name in _limits_ready:
            return
        with get_client(sync_client=True) as client:
            try:
                client.upsert_global_concurrency_limit_by_name(name, limit=1)
            except ObjectAlreadyExists:
                pass
            except PrefectHTTPStatusError as err:
                if err.response.status_code != 409:  # 409: created by another process just now
                    raise
        _limits_ready.add(name)


def _in_prefect_run() -> bool:
    if "prefect" not in sys.modules:
        return False
    from prefect.context import FlowRunContext, TaskRunContext

    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


@contextmanager
def gpu_slot(device_key: str | None = AUTO, timeout_s: float | None = None) -> Iterator[str | None]:
    """Hold the device's slot for the duration of the block; yields the limit name or None.

    ``device_key="auto"`` looks for a CUDA device; None (or no device, or no Prefect run
    around the call, as when the library is used directly) means no limit at all.
    """
    key = visible_gpu() if device_key == AUTO else device_key
    if key is None or not _in_prefect_run():
        with nullcontext():
            yield None
        return
    from prefect.concurrency.sync import concurrency

    name = limit_name(key)
    ensure_limit(name)
    with concurrency(name, occupy=1, timeout_seconds=timeout_s, strict=True):
        yield name
