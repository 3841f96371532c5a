"""How the flows run their tasks: which task runner, where its workers find the Prefect API,
how many tasks are in flight, which failures are retried."""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, TypeVar

from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture, as_completed
from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner

from core.errors import InputError, MmpipeError
from flows.environment import DASHBOARD_ENV, prepare_process
from pipeline.outcomes import is_transient

T = TypeVar("T")
LOCAL_DASK = "local"
LOOPBACK = "127.0.0.1"
DEFAULT_DASHBOARD = f"{LOOPBACK}:0"  # this machine only, any free port
RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")


class ExpectedErrorsInOneLine(logging.Filter):
    """Prefect logs a failed run with its traceback. For an expected failure (``MmpipeError``:
    a corrupt video, a missing file) the one-line message is the whole story; tracebacks stay
    for everything unexpected."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], MmpipeError):
            record.exc_info, record.exc_text = None, None
        return True


def begin_run() -> None:
    """The first line of every flow, and of a task that a task runner may send to another
    process (``extract-batch``). A deployment's flow run starts in a process that a work pool's
    worker spawned, and a process-pool or Dask task runner runs tasks in worker processes
    (perhaps on other machines): none of them went through the ``mmpipe`` CLI, so its process
    set-up happens here too (offline hubs, numba's cache folder, quiet MediaPipe logs, the
    allocator; it only sets what is unset, before any of those libraries is imported by the
    run). Then expected errors are logged in one line."""
    prepare_process()
    quiet_expected_errors()


def quiet_expected_errors() -> None:
    for name in RUN_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, ExpectedErrorsInOneLine) for f in logger.filters):
            logger.addFilter(ExpectedErrorsInOneLine())


def retry_if_transient(task, task_run, state) -> bool:
    """Retry condition for Prefect tasks: only errors marked transient (I/O hiccups) are worth
    another attempt; a corrupt video fails the same way every time."""
    try:
        state.result()
    except BaseException as err:  # noqa: BLE001 - we only classify it
        return is_transient(err)
    return False


# Options of every extraction task: retry transient errors only (twice, after 5 s and 30 s), and
# no Prefect result cache: whether a video is done is decided by its Parquet file (content hash
# + feature key in the store's metadata), which survives restarts and any result-storage setup.
EXTRACTION_TASK_OPTIONS: dict[str, Any] = {
    "retries": 2,
    "retry_delay_seconds": [5, 30],
    "retry_condition_fn": retry_if_transient,
    "cache_policy": NO_CACHE,
    "persist_result": False,
}


@contextmanager
def shared_api_for_workers() -> Iterator[str | None]:
    """Process-based task runners (process pool, Dask) start workers that talk to the Prefect
    API. With no server configured each worker would start its own temporary server (~10 s
    each, and their task runs would be invisible); point them at the one this process uses."""
    if os.environ.get("PREFECT_API_URL"):
        yield os.environ["PREFECT_API_URL"]
        return
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        url = str(client.api_url or "")
    if not url.startswith("http"):
        yield None
        return
    os.environ["PREFECT_API_URL"] = url
    try:
        yield url
    finally:
        os.environ.pop("PREFECT_API_URL", None)


def make_task_runner(workers: int = 1, dask: str | None = None) -> TaskRunner:
    """One worker: a thread in this process (models load once, nothing to spawn). Several: a
    pool of processes, since extraction is CPU-bound Python + native code. ``dask="local"``: a
    local Dask cluster of ``workers`` single-threaded processes; any other value is the address
    of an existing Dask scheduler (``tcp://host:8786``)."""
    workers = max(1, int(workers))
    if dask:
        os.environ.setdefault("DASK_DISTRIBUTED__LOGGING__DISTRIBUTED", "warning")
        from prefect_dask import DaskTaskRunner

        if dask == LOCAL_DASK:
            return DaskTaskRunner(
                cluster_kwargs={
                    "n_workers": workers,
                    "threads_per_worker": 1,
                    "processes": True,
                    "host": LOOPBACK,  # scheduler, nannies and workers: nobody else needs them
                    "dashboard_address": dashboard_address(),
                }
            )
        if "://" not in dask and ":" not in dask:
            raise InputError(f"--dask expects 'local' or a scheduler address like tcp://host:8786, got {dask!r}")
        return DaskTaskRunner(address=dask)
    if workers == 1:
        return ThreadPoolTaskRunner(max_workers=1)
    return ProcessPoolTaskRunner(max_workers=workers)


def dashboard_address() -> str | None:
    """Where a local Dask cluster's dashboard listens: loopback unless the user asks otherwise
    with ``MMPIPE_DASK_DASHBOARD`` (``--dask-dashboard``): ``0.0.0.0:8787`` to reach it from
    other hosts, ``off`` for none. Dask's own default, ``:8787``, is every interface."""
    value = os.environ.get(DASHBOARD_ENV, "").strip() or DEFAULT_DASHBOARD
    return None if value.lower() in ("off", "none", "no", "false") else value


def runner_label(workers: int, dask: str | None) -> str:
    if dask == LOCAL_DASK:
        return f"dask-local x{workers}"
    if dask:
        return f"dask {dask}"
    return "thread" if workers <= 1 else f"process-pool x{workers}"


def submit_windowed(
    runner: TaskRunner,
    task,
    items: Iterable[T],
    parameters: Callable[[T], dict[str, Any]],
    window: int,
) -> Iterator[tuple[T, PrefectFuture]]:
    """Submit one task run per item but keep at most ``window`` in flight, yielding each
    finished (item, future) as soon as it is done. A directory of thousands of videos thus
    never becomes thousands of pending task runs at once."""
    pending: dict[PrefectFuture, T] = {}
    todo = iter(items)
    while True:
        while len(pending) < max(1, window) and (item := next(todo, _END)) is not _END:
            pending[runner.submit(task, parameters(item))] = item
        if not pending:
            return
        done = next(as_completed(list(pending)))
        yield pending.pop(done), done


_END: Any = object()
