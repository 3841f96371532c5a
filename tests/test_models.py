"""The process-wide model cache: one load per key, even when threads ask at once; keys load
side by side; a failed load is not kept."""

from __future__ import annotations

import threading
import time

import pytest

from core.models import cached


def test_one_load_per_key_when_threads_ask_at_once():
    loads = []

    def load():
        loads.append(1)
        time.sleep(0.05)
        return object()

    got = []
    threads = [threading.Thread(target=lambda: got.append(cached(("test", "once"), load))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(loads) == 1 and len({id(g) for g in got}) == 1


def test_different_keys_load_side_by_side():
    started, release = threading.Event(), threading.Event()

    def slow():
        started.set()
        release.wait(10)  # held until the other key's load is over (or 10 s, if it waits for this one)
        return "slow"

    t = threading.Thread(target=lambda: cached(("test", "slow"), slow))
    t.start()
    started.wait()
    assert cached(("test", "quick"), lambda: "quick") == "quick"
    assert t.is_alive()  # the quick load did not wait for the slow one
    release.set()
    t.join()


def test_a_failed_load_is_not_kept():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("disk hiccup")
        return "model"

    with pytest.raises(RuntimeError):
        cached(("test", "flaky"), flaky)
    assert cached(("test", "flaky"), flaky) == "model" and len(calls) == 2
