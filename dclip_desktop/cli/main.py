"""`dclip` command line. Each subcommand lives in its own module exposing `register(subparsers)`;
the handler returns an exit code. User errors print one line, no traceback."""

from __future__ import annotations

import argparse
import importlib
import logging
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


class UserError(Exception):
    """A problem with the user's input or environment: reported as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dclip", description="DiffusionCLIP Desktop: text-driven image editing with fine-tuned diffusion models."
    )
    parser.add_argument("--version", action="version", version=f"dclip {__version__}")
    parser.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N or mps (default: settings / auto)")
    parser.add_argument("--precision", default=None, help="auto, fp32, bf16 or fp16 (default: settings / auto)")
    parser.add_argument("--offline", action="store_true", help="never touch the network")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # a command module not written yet
                continue
            raise
        module.register(sub)
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
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if args.offline:
        import os

        os.environ["DCLIP_OFFLINE"] = "1"
    from ..jobs.errors import user_message

    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"dclip {args.command}: cancelled", file=sys.stderr)
        return 130
    except Exception as exc:
        message = user_message(exc)
        if message is None:  # a bug: keep the traceback
            raise
        print(f"dclip {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
