"""`dclip` command line. Each subcommand lives in its own module exposing `register(subparsers)`;
the handler returns an exit code. User errors print one line, no traceback."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys

from .. import __version__

# Modules that add subcommands, in --help order.
COMMAND_MODULES = [
    "dclip_desktop.cli.models_cmd",
    "dclip_desktop.cli.edit_cmds",
    "dclip_desktop.cli.demo_cmd",
    "dclip_desktop.cli.library_cmd",
    "dclip_desktop.cli.batch_cmd",
    "dclip_desktop.cli.bench_cmd",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dclip", description="DiffusionCLIP Desktop: text-driven image editing with fine-tuned diffusion models."
    )
    parser.add_argument("--version", action="version", version=f"dclip {__version__}")
    parser.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N or mps (default: settings / auto)")
    parser.add_argument("--precision", default=None, help="auto, fp32, bf16 or fp16 (default: settings / auto)")
    parser.add_argument("--offline", action="store_true", help="never touch the network")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an internal error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


class _Warnings(logging.Handler):
    """The engine's warnings (a latent cache that could not be written, ...) as `dclip: warning: ...`
    lines on whatever stderr is now."""

    def emit(self, record: logging.LogRecord) -> None:
        print(f"dclip: warning: {record.getMessage()}", file=sys.stderr)


def _show_warnings() -> None:
    log = logging.getLogger("dclip_desktop")
    if not any(isinstance(h, _Warnings) for h in log.handlers):
        log.addHandler(_Warnings(logging.WARNING))


def main(argv: list[str] | None = None) -> int:
    _show_warnings()
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from ..errors import Kind
    from ..jobs.errors import classify

    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"dclip {args.command}: cancelled", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `dclip info x.png | head`: the reader has all it wanted, as with any Unix tool
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return 128 + signal.SIGPIPE
    except Exception as exc:
        failure = classify(exc)
        if failure.kind is Kind.CANCELLED:
            print(f"dclip {args.command}: cancelled", file=sys.stderr)
            return 130
        if failure.kind is not Kind.BUG:
            print(f"dclip {args.command}: error: {failure.message}", file=sys.stderr)
            return 2
        if args.debug:
            raise
        log = _write_crash_log(argv)
        print(f"dclip {args.command}: internal error ({type(exc).__name__}: {_first_line(exc)}). This is a bug; "
              f"the traceback is in {log} (or run again with --debug). Please report it.", file=sys.stderr)
        return 1


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else "no message"


def _write_crash_log(argv: list[str]) -> str:
    """Append the current traceback to the log file, and return where it went (stderr if nowhere)."""
    import time
    import traceback

    from ..jobs.settings import log_dir

    try:
        path = log_dir() / "dclip-errors.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} dclip {' '.join(argv)}\n")
            f.write(traceback.format_exc())
        return str(path)
    except OSError:
        traceback.print_exc()
        return "the output above"


if __name__ == "__main__":
    sys.exit(main())
