"""Command line: `reactor serve` and the operator commands (check-config, print-config, logs)."""

from __future__ import annotations

import argparse
import sys

from reactor import __version__

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but errors are one line (`reactor: error: …`) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from reactor.ops import config

    parser = _Parser(prog="reactor", description="A production HTTP/1.1 server.")
    parser.add_argument("--version", action="version", version=f"reactor {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    serve = commands.add_parser("serve", help="run the server")
    config.add_serve_arguments(serve)
    serve.add_argument("--daemon", action="store_true",
                       help="detach and run in the background (hosts without systemd); needs"
                            " file log targets; writes daemon.pidfile (--pidfile) if set")
    check = commands.add_parser("check-config", help="validate the configuration and exit")
    config.add_check_config_arguments(check)
    show = commands.add_parser("print-config", help="print the effective configuration")
    config.add_serve_arguments(show)
    commands.add_parser("logs", help="read, filter and summarise access logs",
                        add_help=False, prefix_chars="\0")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["logs"]:
        from reactor.ops.logtool import logs_main
        return logs_main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "check-config":
        from reactor.ops.config import run_check_config
        return run_check_config(args)
    if args.command == "print-config":
        from reactor.ops.config import run_print_config
        return run_print_config(args)
    return serve(args)


def serve(args: argparse.Namespace) -> int:
    from reactor.ops.startup import serve as run_serve

    return run_serve(args)
