"""``mmpipe backfill``: every new or changed video under a folder, through the ``backfill`` flow.

The flow runs in-process: with no Prefect server configured Prefect runs it in ephemeral mode (a
temporary local API for the duration of the command), so nothing needs to be set up; with
``PREFECT_API_URL`` set the run shows up on that server. Inputs and the output folder are
checked before Prefect starts, so a wrong path is one line, not a crashed flow run.
"""

from __future__ import annotations

import argparse
import json
import os

from core.errors import InputError
from core.files import MIN_FREE_BYTES, writable_folder
from flows.cli.options import add_config_args, config_from_args
from flows.environment import DASHBOARD_ENV, prepare_prefect
from flows.lifetime import owned_processes
from pipeline.backfill import IN_FLIGHT, check_input_dir
from pipeline.outcomes import FAILURES_LOG, Failure, format_failures


def register(subparsers: argparse._SubParsersAction) -> None:
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
    p.add_argument("--in-flight", type=int, default=IN_FLIGHT, metavar="N",
                   help=f"videos each worker extracts at once (default {IN_FLIGHT}: one's speech is recognised "
                   "while another's faces are tracked; 1 halves the memory)")
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


def cmd_backfill(args: argparse.Namespace) -> int:
    check_input_dir(args.input_dir)  # one-line errors before Prefect starts
    writable_folder(args.out, MIN_FREE_BYTES)
    if args.workers < 1:
        raise InputError("--workers must be at least 1")
    if args.in_flight < 1:
        raise InputError("--in-flight must be at least 1")
    config = config_from_args(args)
    prepare_prefect(args.quiet)
    if args.dask_dashboard:
        os.environ[DASHBOARD_ENV] = args.dask_dashboard
    # Deferred: Prefect takes ~2 s to import, and its logging settings must be decided first.
    from flows.backfill import backfill_flow  # deferred: see above

    with owned_processes():  # the temporary API server too: it starts with the first flow call
        result = backfill_flow(
            input_dir=args.input_dir, out_dir=args.out, patterns=args.patterns, config=config.to_dict(),
            workers=args.workers, dask=args.dask, force=args.force, batch_size=args.batch_size,
            in_flight=args.in_flight,
        )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(result["summary"])
        if result["failures"]:
            print(format_failures([Failure(**f) for f in result["failures"]]))
        print(f"features: {result['out_dir']}  (failures log: {os.path.join(result['out_dir'], FAILURES_LOG)})")
    return 1 if result["failed"] else 0
