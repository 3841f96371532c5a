"""The four flows by name, and serving all their deployments from one process (``mmpipe serve``).

``prefect.yaml`` declares the same flows as deployments on a process work pool (named
``<flow>/pool``); served ones are named ``<flow>/serve`` so both can live on one server.
"""

from __future__ import annotations

from typing import Any

from prefect import serve
from prefect.settings import get_current_settings

from core.errors import InputError, MmpipeError
from flows.backfill import backfill_flow
from flows.extract import extract_video_flow
from flows.score import score_flow
from flows.train import train_flow

FLOWS = {
    "extract-video": extract_video_flow,
    "backfill": backfill_flow,
    "train": train_flow,
    "score": score_flow,
}
SERVE_DEPLOYMENT = "serve"
POOL_DEPLOYMENT = "pool"
POOL_NAME = "mmpipe-process"


def load_flow(name: str):
    if name not in FLOWS:
        raise InputError(f"unknown flow {name!r}; choose from {', '.join(FLOWS)}")
    return FLOWS[name]


def served_deployments(name: str = SERVE_DEPLOYMENT) -> list[Any]:
    return [f.to_deployment(name=name, tags=["mmpipe"], description=f.description) for f in FLOWS.values()]


def require_server() -> str:
    """Serving needs a server others can reach: an ephemeral one dies with this process and
    nobody else could trigger runs on it."""
    url = get_current_settings().api.url
    if not url:
        raise MmpipeError(
            "no Prefect server configured: start one with `prefect server start` and run "
            "`prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api` (or export it)"
        )
    return str(url)


def serve_all(limit: int | None = None) -> None:
    """Serve every flow's deployment; runs execute as subprocesses of this one, at most
    ``limit`` at a time. Stops on Ctrl-C / SIGTERM."""
    require_server()
    serve(*served_deployments(), limit=limit)
