"""``mmpipe backfill``, ``mmpipe flow run|list`` and ``mmpipe serve``.

``backfill`` and ``flow run`` call the flows in-process: with no Prefect server configured
Prefect runs them in ephemeral mode (a temporary local API for the duration of the command),
so nothing needs to be set up. With ``PREFECT_API_URL`` set they show up on that server.
Prefect is imported only inside the commands, so ``mmpipe --help`` stays fast.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
from typing import Any

from pipeline.errors import InputError
from pipeline.files import MIN_FREE_BYTES, writable_folder


def register(subparsers: argparse._SubParsersAction) -> None:
    from pipeline.cli import add_config_args

    p = subparsers.add_parser(
        "backfill",
        help="extract every new or changed video under a folder (Prefect flow, no server needed)",
        description="Extract features for every video under DIR that has no up-to-date output in --out. "
        "Re-running skips finished videos; a killed run resumes where it stopped.",
    )
    p.add_argument("input_dir", metavar="DIR", help="folder of videos (searched recursively)")
    p.add_argument("--out", default="features", help="output folder (default: ./features)")
    p.add_argument("--pattern", action="append", dest="patterns", metavar="GLOB",
                   help="only files matching GLOB (repeatable; *.mp4 matches at any depth, a/*/b.mov relative to DIR)")
    p.add_argument("--workers", type=int, default=1, help="parallel extraction workers (default 1)")
    p.add_argument("--dask", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="run on Dask: a local cluster of --workers processes, or the scheduler at ADDRESS "
                   "(tcp://host:8786); put it after DIR or write --dask=ADDRESS")
    p.add_argument("--dask-dashboard", metavar="HOST:PORT",
                   help="where the local Dask cluster's dashboard listens (default 127.0.0.1 on a free port, "
                   "this machine only; 0.0.0.0:8787 to reach it from other hosts; off for none)")
    p.add_argument("--batch-size", type=int, help="videos per task (default: chosen from the count and workers)")
    p.add_argument("--force", action="store_true", help="re-extract even up-to-date videos")
    p.add_argument("--json", action="store_true", help="print the run report as JSON")
    p.add_argument("--quiet", action="store_true", help="hide Prefect's run logs")
    add_config_args(p)
    p.set_defaults(func=cmd_backfill)

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


def _prefect_logging(quiet: bool) -> None:
    """Prefect reads its logging settings when first imported: decide before that."""
    if quiet:
        os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
    os.environ.setdefault("DASK_DISTRIBUTED__LOGGING__DISTRIBUTED", "warning")


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


def cmd_backfill(args: argparse.Namespace) -> int:
    from pipeline.batch import check_input_dir
    from pipeline.cli import config_from_args

    check_input_dir(args.input_dir)  # one-line errors before Prefect starts
    writable_folder(args.out, MIN_FREE_BYTES)
    if args.workers < 1:
        raise InputError("--workers must be at least 1")
    config = config_from_args(args)
    _prefect_logging(args.quiet)
    if args.dask_dashboard:
        from flows.runtime import DASHBOARD_ENV

        os.environ[DASHBOARD_ENV] = args.dask_dashboard
    from flows.backfill import backfill_flow
    from flows.lifetime import owned_processes
    from pipeline.batch import FAILURES_LOG, Failure, format_failures

    with owned_processes():  # the temporary API server too: it starts with the first flow call
        result = backfill_flow(
            input_dir=args.input_dir, out_dir=args.out, patterns=args.patterns, config=config.to_dict(),
            workers=args.workers, dask=args.dask, force=args.force, batch_size=args.batch_size,
        )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(result["summary"])
        if result["failures"]:
            print(format_failures([Failure(**f) for f in result["failures"]]))
        print(f"features: {result['out_dir']}  (failures log: {os.path.join(result['out_dir'], FAILURES_LOG)})")
    return 1 if result["failed"] else 0


def cmd_flow_run(args: argparse.Namespace) -> int:
    _prefect_logging(args.quiet)
    from flows.deployments import load_flow

    flow = load_flow(args.name)
    params = parse_params(args.param)
    sig = inspect.signature(flow.fn)
    unknown = sorted(set(params) - set(sig.parameters))
    if unknown:
        raise InputError(f"flow {args.name} has no parameter(s) {', '.join(unknown)}; it takes {', '.join(sig.parameters)}")
    missing = [n for n, p in sig.parameters.items() if p.default is inspect.Parameter.empty and n not in params]
    if missing:
        raise InputError(f"flow {args.name} needs --param {' --param '.join(m + '=...' for m in missing)}")
    from flows.lifetime import owned_processes

    with owned_processes():
        result = flow(**params)
    print(json.dumps(result, indent=2, default=str))
    if isinstance(result, dict) and result.get("failed"):
        return 1
    return 0


def cmd_flow_list(args: argparse.Namespace) -> int:
    from flows.deployments import FLOWS, load_flow

    for name in FLOWS:
        flow = load_flow(name)
        params = ", ".join(
            n if p.default is inspect.Parameter.empty else f"{n}={p.default!r}"
            for n, p in inspect.signature(flow.fn).parameters.items()
        )
        summary = (flow.description or "").strip().splitlines()[0] if flow.description else ""
        print(f"{name}({params})\n    {summary}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    _prefect_logging(False)
    from flows.deployments import serve_all

    serve_all(limit=args.limit)
    return 0

