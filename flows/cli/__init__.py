"""The ``mmpipe`` command line: one module per command group, each adding its sub-commands with
``register(subparsers)`` and holding no logic of its own beyond parsing, calling the library and
printing.

Every command prints expected failures (bad input, an unusable output folder, an unreadable
checkpoint) as one line ``mmpipe: error: <path>: <cause>`` and exits 1; anything unexpected is
one line too (exit 2), with the traceback only under ``--debug``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from core.errors import MmpipeError
from flows.cli import backfill, extract, flow, model, score
from flows.environment import prepare_process, quiet_library_warnings

COMMANDS = (extract, score, backfill, flow, model)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmpipe", description="Multimodal sentiment analysis from raw video (MMLatch).")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    prepare_process()
    quiet_library_warnings()
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="mmpipe: %(levelname)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except MmpipeError as err:
        if args.debug:
            raise
        print(f"mmpipe: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("mmpipe: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and closed early: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as err:  # an unexpected failure: still one line, details with --debug
        if args.debug:
            raise
        print(f"mmpipe: internal error: {type(err).__name__}: {err} (run with --debug for details)", file=sys.stderr)
        return 2
