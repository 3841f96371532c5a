"""``mmpipe flow run|list`` and ``mmpipe serve``: the Prefect flows by name, in-process or
served as deployments."""

from __future__ import annotations

import argparse
import inspect
import json
from typing import Any

from core.errors import InputError
from flows.environment import prepare_prefect
from flows.lifetime import owned_processes


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("flow", help="run or list mmpipe's Prefect flows in-process")
    flow_sub = p.add_subparsers(dest="flow_command", required=True, metavar="ACTION")
    run = flow_sub.add_parser("run", help="run a flow embedded (no server needed)")
    run.add_argument("name", help="extract-video | backfill | train | score")
    run.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                     help="flow parameter; VALUE is read as JSON when it parses, else as text (repeatable)")
    run.add_argument("--quiet", action="store_true", help="hide Prefect's run logs")
    run.set_defaults(func=cmd_flow_run)
    lst = flow_sub.add_parser("list", help="the flows and their parameters")
    lst.set_defaults(func=cmd_flow_list)

    p = subparsers.add_parser(
        "serve",
        help="serve all four flows as deployments '<flow>/serve' from this process (needs a Prefect server)",
    )
    p.add_argument("--limit", type=int, help="most flow runs at a time (default: no limit)")
    p.set_defaults(func=cmd_serve)


def parse_params(items: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--param expects KEY=VALUE, got {item!r}")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def cmd_flow_run(args: argparse.Namespace) -> int:
    params = parse_params(args.param)
    prepare_prefect(args.quiet)
    # Deferred: Prefect takes ~2 s to import, and its logging settings must be decided first.
    from flows.deployments import load_flow  # deferred: Prefect takes ~2 s to import

    flow = load_flow(args.name)
    sig = inspect.signature(flow.fn)
    unknown = sorted(set(params) - set(sig.parameters))
    if unknown:
        raise InputError(f"flow {args.name} has no parameter(s) {', '.join(unknown)}; it takes {', '.join(sig.parameters)}")
    missing = [n for n, p in sig.parameters.items() if p.default is inspect.Parameter.empty and n not in params]
    if missing:
        raise InputError(f"flow {args.name} needs --param {' --param '.join(m + '=...' for m in missing)}")
    with owned_processes():
        result = flow(**params)
    print(json.dumps(result, indent=2, default=str))
    if isinstance(result, dict) and result.get("failed"):
        return 1
    return 0


def cmd_flow_list(args: argparse.Namespace) -> int:
    from flows.deployments import FLOWS  # deferred: Prefect takes ~2 s to import

    for name, flow in FLOWS.items():
        params = ", ".join(
            n if p.default is inspect.Parameter.empty else f"{n}={p.default!r}"
            for n, p in inspect.signature(flow.fn).parameters.items()
        )
        summary = (flow.description or "").strip().splitlines()[0] if flow.description else ""
        print(f"{name}({params})\n    {summary}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    prepare_prefect()
    from flows.deployments import serve_all  # deferred: Prefect takes ~2 s to import

    serve_all(limit=args.limit)
    return 0
