"""End to end on a real Prefect server: `prefect server start` on 127.0.0.1, a process work pool,
`prefect deploy --all` from prefect.yaml, a worker, `prefect deployment run 'backfill/pool'`;
then `mmpipe serve` and `prefect deployment run 'extract-video/serve'`. Everything started here
is stopped here (workers stop on SIGINT, not SIGTERM)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from pipeline.outcomes import FAILURES_LOG
from pipeline.store import read_metadata
from tests.conftest import ROOT
from tests.test_backfill import FAST, GOOD, make_clip_dir, outputs

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Processes:
    """Long-running commands in their own process groups, logged to files, stopped in reverse."""

    def __init__(self, env: dict[str, str], logs: Path):
        self.env, self.logs, self.started = env, logs, []

    def start(self, name: str, *cmd: str) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "w")
        proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.started.append((name, proc, log))
        return proc

    def run(self, *cmd: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout)

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text()

    def stop_all(self) -> None:
        for name, proc, log in reversed(self.started):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
            log.close()


def wait_for(url: str, timeout: float, what: str, procs: Processes, name: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"{what} not ready after {timeout:.0f} s; {name} log:\n{procs.log(name)[-3000:]}")


def test_deploy_and_run_on_a_local_server_then_serve(tmp_path):
    clips = make_clip_dir(tmp_path)
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
    }
    env.pop("PREFECT_LOGGING_LEVEL", None)
    procs = Processes(env, tmp_path)
    prefect = (sys.executable, "-m", "prefect")
    try:
        procs.start("server", *prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port))
        wait_for(f"{api}/health", 180, "Prefect server", procs, "server")

        made = procs.run(*prefect, "work-pool", "create", "mmpipe-process", "--type", "process")
        assert made.returncode == 0, made.stdout + made.stderr
        deployed = procs.run(*prefect, "--no-prompt", "deploy", "--all")
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        for flow_name in ("extract-video", "backfill", "train", "score"):
            assert f"Deployment '{flow_name}/pool' successfully created" in deployed.stdout

        procs.start("worker", *prefect, "worker", "start", "--pool", "mmpipe-process")
        out = tmp_path / "features"
        ran = procs.run(
            *prefect, "deployment", "run", "backfill/pool",
            "--param", f"input_dir={clips}", "--param", f"out_dir={out}",
            "--param", f"config={json.dumps(FAST)}", "--watch", "--watch-timeout", "300",
            timeout=360,
        )
        assert ran.returncode == 0 and "Completed" in ran.stdout, ran.stdout + ran.stderr + procs.log("worker")[-3000:]
        assert outputs(out) == GOOD
        log = json.loads((out / FAILURES_LOG).read_text())
        assert (log["done"], log["failed"]) == (3, 1)
        # The failure table is on the server, attached to the run.
        found = httpx.post(f"{api}/artifacts/filter", json={"artifacts": {"key": {"any_": ["backfill-failures"]}}}).json()
        assert any("broken.mp4" in json.dumps(a["data"]) for a in found)

        procs.start("serve", sys.executable, "-m", "flows.cli", "serve")
        wait_for(f"{api}/deployments/name/extract-video/serve", 120, "mmpipe serve", procs, "serve")
        single = tmp_path / "served"
        ran = procs.run(
            *prefect, "deployment", "run", "extract-video/serve",
            "--param", f"video={clips / 'single_face.mp4'}", "--param", f"out_dir={single}",
            "--param", f"config={json.dumps(FAST)}", "--watch", "--watch-timeout", "240",
            timeout=300,
        )
        assert ran.returncode == 0 and "Completed" in ran.stdout, ran.stdout + ran.stderr + procs.log("serve")[-3000:]
        assert read_metadata(single / "single_face.parquet").summary["words"] == 6
        for flow_name in ("backfill", "train", "score"):
            assert httpx.get(f"{api}/deployments/name/{flow_name}/serve").status_code == 200
    finally:
        procs.stop_all()
    for name, proc, _ in procs.started:
        assert proc.poll() is not None, f"{name} still running"
