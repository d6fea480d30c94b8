"""The ``irrepprobe`` command. Thin: parse, call the library, print. Bad input -> one line, exit 2."""
from __future__ import annotations

import os
import sys

from .parser import build_parser

__all__ = ["build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for reports that state their command
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from ..errors import IrrepprobeError

    try:
        return args.func(args)
    except IrrepprobeError as e:
        if args.debug:
            raise
        print(f"irrepprobe: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("irrepprobe: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # an internal failure: still one line unless --debug
        if args.debug or os.environ.get("IRREPPROBE_DEBUG"):
            raise
        print(f"irrepprobe: internal error: {type(e).__name__}: {e} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return 1
