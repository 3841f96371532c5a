"""Nothing mmpipe starts outlives it, and nothing it starts listens beyond loopback: the guardian
of ``flows.lifetime`` on real processes, the local Dask cluster's sockets, and a real
``mmpipe backfill`` killed with SIGKILL (its temporary API server, Dask workers and guardian
must all be gone within seconds)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterable

import pytest

psutil = pytest.importorskip("psutil")

from flows import lifetime  # noqa: E402
from flows.lifetime import GRACE_S, MARKER, owner_token  # noqa: E402
from tests.conftest import ROOT, VIDEOS  # noqa: E402
from tests.test_backfill import TALK_TEXT  # noqa: E402

pytestmark = pytest.mark.skipif(not lifetime.supported(), reason="the guardian needs Linux /proc")

LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}
SLEEPER = "import time; time.sleep(300)"
STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"


def alive(p: psutil.Process) -> bool:
    """Running and not a zombie (an orphan's zombie may linger if PID 1 does not reap)."""
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_for(condition: Callable[[], bool], timeout: float, what: str, proc: subprocess.Popen | None = None,
             log: Path | None = None) -> float:
    t0 = time.monotonic()
    while not condition():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"exited ({proc.returncode}) before {what}:\n{log.read_text()[-3000:] if log else ''}")
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"not within {timeout} s: {what}")
        time.sleep(0.05)
    return time.monotonic() - t0


def listening(procs: Iterable[psutil.Process]) -> list[tuple[int, str, int]]:
    """(pid, address, port) of every listening TCP socket the processes own."""
    found = []
    for p in procs:
        with contextlib.suppress(psutil.Error):
            found += [(p.pid, c.laddr.ip, c.laddr.port) for c in p.net_connections(kind="inet")
                      if c.status == psutil.CONN_LISTEN]
    return found


def ignores_sigterm(pid: int) -> bool:
    with open(f"/proc/{pid}/status") as fh:
        mask = next(line for line in fh if line.startswith("SigIgn:")).split()[1]
    return bool(int(mask, 16) & (1 << (signal.SIGTERM - 1)))


def marked_by(token: str) -> list[int]:
    return [pid for pid, (_, owner) in lifetime.marked_processes().items() if owner == token]


def start_owner(tmp_path: Path, body: str) -> tuple[subprocess.Popen, list[int]]:
    """A Python process running ``body`` (which prints pids, one line) then sleeping; returns it
    and the printed pids."""
    script = tmp_path / "owner.py"
    script.write_text(
        "import subprocess, sys, time\n"
        "from flows.lifetime import owned_processes\n"
        f"SLEEPER, STUBBORN = {SLEEPER!r}, {STUBBORN!r}\n"
        f"{body}\n"
        "time.sleep(300)\n"
    )
    proc = subprocess.Popen([sys.executable, str(script)], cwd=ROOT, stdout=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True)
    line = proc.stdout.readline()
    assert line, "the owner script died"
    return proc, [int(x) for x in line.split()]


def kill_all(pids: Iterable[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_children_of_a_killed_owner_are_stopped_and_no_other_process(tmp_path):
    bystander = subprocess.Popen([sys.executable, "-c", SLEEPER],  # marked, but its owner lives
                                 env={**os.environ, MARKER: owner_token()})
    owner, pids = start_owner(tmp_path, (
        "with owned_processes():\n"
        "    kids = [subprocess.Popen([sys.executable, '-c', c]) for c in (SLEEPER, STUBBORN)]\n"
        "outside = subprocess.Popen([sys.executable, '-c', SLEEPER])  # not started inside the block\n"
        "print(*[k.pid for k in kids], outside.pid, flush=True)"
    ))
    try:
        sleeper, stubborn, outside = (psutil.Process(p) for p in pids)
        token = owner_token(owner.pid)
        guardian = [c for c in psutil.Process(owner.pid).children() if "lifetime.py" in " ".join(c.cmdline())]
        assert len(guardian) == 1 and guardian[0].environ().get(MARKER) is None
        assert sorted(marked_by(token)) == sorted([sleeper.pid, stubborn.pid])
        wait_for(lambda: ignores_sigterm(stubborn.pid), 10, "the stubborn child ignores SIGTERM")
        owner.kill()
        owner.wait()
        t0 = time.monotonic()
        wait_for(lambda: not alive(sleeper), 5, "the marked child ends")
        t_polite = time.monotonic() - t0
        wait_for(lambda: not alive(stubborn), GRACE_S + 5, "the SIGTERM-proof child ends")
        t_stubborn = time.monotonic() - t0
        print(f"after kill -9: child gone in {t_polite:.2f} s, SIGTERM-proof child in {t_stubborn:.2f} s")
        assert t_stubborn >= GRACE_S - 0.5  # it was asked first
        wait_for(lambda: not alive(guardian[0]), 5, "the guardian exits")
        assert alive(outside) and alive(psutil.Process(bystander.pid))  # not ours: left alone
    finally:
        kill_all([bystander.pid, owner.pid, *pids])
        bystander.wait()


def test_leftovers_whose_guardian_died_too_are_stopped_at_the_next_start(tmp_path):
    first, (child,) = start_owner(tmp_path, (
        "with owned_processes():\n"
        "    print(subprocess.Popen([sys.executable, '-c', SLEEPER]).pid, flush=True)"
    ))
    later = None
    try:
        guardian = next(c for c in psutil.Process(first.pid).children() if "lifetime.py" in " ".join(c.cmdline()))
        guardian.kill()  # both at once, as an OOM kill or `kill -9 -<session>` could do
        first.kill()
        first.wait()
        time.sleep(1)
        orphan = psutil.Process(child)
        assert alive(orphan), "nothing should have stopped it yet"
        later, _ = start_owner(tmp_path, "with owned_processes():\n    print(0, flush=True)")
        took = wait_for(lambda: not alive(orphan), 10, "the next start stops the leftover")
        print(f"leftover stopped {took:.2f} s after the next start")
        assert alive(psutil.Process(later.pid))
    finally:
        kill_all([child, first.pid] + ([later.pid] if later else []))
        if later:
            later.wait()


def test_dashboard_is_loopback_unless_asked(monkeypatch):
    from flows.runtime import DASHBOARD_ENV, dashboard_address, make_task_runner

    monkeypatch.delenv(DASHBOARD_ENV, raising=False)
    kwargs = make_task_runner(2, "local").cluster_kwargs
    assert kwargs["host"] == "127.0.0.1" and kwargs["dashboard_address"] == "127.0.0.1:0"
    monkeypatch.setenv(DASHBOARD_ENV, "0.0.0.0:8787")
    assert dashboard_address() == "0.0.0.0:8787"
    monkeypatch.setenv(DASHBOARD_ENV, "off")
    assert make_task_runner(2, "local").cluster_kwargs["dashboard_address"] is None


def test_local_dask_cluster_listens_on_loopback_only(monkeypatch):
    from flows.lifetime import owned_processes
    from flows.runtime import DASHBOARD_ENV, make_task_runner

    monkeypatch.delenv(DASHBOARD_ENV, raising=False)
    me = psutil.Process()
    with owned_processes() as token, make_task_runner(2, "local") as runner:
        dashboard = runner.client.dashboard_link  # the cluster starts with its client
        runner.client.wait_for_workers(2)
        children = [p for p in me.children(recursive=True) if p.pid in marked_by(token)]
        workers = [p for p in children if "spawn_main" in " ".join(p.cmdline())]
        sockets = listening([me, *children])
    assert dashboard.startswith("http://127.0.0.1:")
    assert int(dashboard.split(":")[2].split("/")[0]) in {port for _, _, port in sockets}
    assert len({pid for pid, _, _ in sockets}) >= 3  # this process (scheduler, dashboard) + 2 workers
    assert not [s for s in sockets if s[1] not in LOOPBACK], f"listening beyond loopback: {sockets}"
    assert len(workers) == 2  # the other marked child is multiprocessing's resource tracker
    wait_for(lambda: not any(alive(w) for w in workers), 10, "the workers end when the cluster closes")


def clip_dir(root: Path, copies: int) -> Path:
    """Real talking-head clips with transcript sidecars (no speech recognition): enough work to
    keep a backfill busy for a while after its processes are up."""
    clips = root / "clips"
    clips.mkdir()
    for i in range(copies):
        shutil.copyfile(VIDEOS / "retalking_face_5.mp4", clips / f"talk_{i}.mp4")
        (clips / f"talk_{i}.txt").write_text(TALK_TEXT)
    return clips


def is_api_server(p: psutil.Process) -> bool:
    with contextlib.suppress(psutil.Error):
        return "prefect.server.api.server:create_app" in " ".join(p.cmdline())
    return False


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
@pytest.mark.parametrize("how", ["kill-9", "kill-9 dask", "interrupt"])
def test_a_killed_backfill_leaves_no_process_behind(tmp_path, how):
    """``kill -9`` of the main process alone (not its group, unlike a terminal's Ctrl-C): the
    temporary API server and any Dask workers go too. ``interrupt``: SIGINT, as Ctrl-C would
    send it, still exits 130 with everything shut down."""
    dask = "dask" in how
    clips = clip_dir(tmp_path, 4)
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", MARKER)}  # ephemeral mode
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    cmd = [sys.executable, "-m", "flows.cli", "backfill", str(clips), "--out", str(tmp_path / "out"),
           "--face-fps", "5", "--asr-model", "tiny.en"] + (["--workers", "2", "--dask"] if dask else [])
    log = tmp_path / "run.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True, stdout=fh, stderr=subprocess.STDOUT)
    main = psutil.Process(proc.pid)
    try:
        def up() -> bool:
            kids = main.children(recursive=True)
            servers = [p for p in kids if is_api_server(p)]
            workers = [p for p in kids if "spawn_main" in " ".join(p.cmdline())] if dask else []
            workers_up = len(workers) >= 2 and all(listening([w]) for w in workers)
            return bool(listening(servers)) and (workers_up or not dask)

        took = wait_for(up, 240, "the API server (and Dask workers) listen", proc, log)
        token = owner_token(proc.pid)
        tree = [main, *main.children(recursive=True)]
        sockets = listening(tree)
        (server,) = [p for p in tree if is_api_server(p)]
        (port,) = {port for pid, _, port in sockets if pid == server.pid}
        assert not [s for s in sockets if s[1] not in LOOPBACK], f"listening beyond loopback: {sockets}"
        assert set(marked_by(token)) >= {server.pid}
        assert proc.poll() is None, "the run ended before it could be stopped"

        os.kill(proc.pid, signal.SIGINT if how == "interrupt" else signal.SIGKILL)
        t0 = time.monotonic()
        rc = proc.wait(timeout=60)
        children = tree[1:]
        gone = wait_for(lambda: not any(alive(p) for p in children), 15, "every process the run started ends")
        total = time.monotonic() - t0
        print(f"{how}: up after {took:.1f} s ({len(children)} child processes, {len(sockets)} sockets, "
              f"all loopback); all gone {total:.2f} s after the signal")
        assert not marked_by(token) and not port_open(port)
        if how == "interrupt":
            assert rc == 130 and "mmpipe: interrupted" in log.read_text()
        else:
            assert rc == -signal.SIGKILL and gone < 10
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
