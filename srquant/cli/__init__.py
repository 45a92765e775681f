"""The ``srquant`` command line: one module per verb group, each with ``add_commands(subparsers)``."""
from __future__ import annotations

import argparse
import sys
import traceback

from ..errors import SrquantError, clean_message
from . import analyze, bench, evaluate, export, models, quantize, rd, report, train

VERB_GROUPS = (models, evaluate, quantize, bench, report, export, rd, analyze, train)  # the order of `srquant --help`


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="srquant", description="Post-training quantization of super-resolution networks",
                                     epilog="--debug (anywhere on the line) prints the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in VERB_GROUPS:
        group.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command. A bad input prints ``srquant: error: ...`` and returns 2, without a traceback unless
    ``--debug`` is on the command line (anywhere); an unexpected failure returns 1."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    words = [a for a in argv if a != "--debug"]
    if words[:2] == ["bench", "compare"]:  # a verb of two words
        words[:2] = [bench.COMPARE]
    args = build_parser().parse_args(words)
    try:
        args.func(args)
    except (SrquantError, OSError, ValueError, KeyError, RuntimeError) as err:
        if debug:
            traceback.print_exc()
        message = err.args[0] if isinstance(err, KeyError) and not isinstance(err, SrquantError) and err.args else err
        print(f"srquant: error: {clean_message(str(message))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("srquant: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the command line's boundary: a bug, reported in one line
        if debug:
            traceback.print_exc()
        print(f"srquant: internal error: {type(err).__name__}: {clean_message(str(err))} (rerun with --debug for the "
              "traceback)", file=sys.stderr)
        return 1
    return 0

