"""The one command-line convention of the six tools, written once (README, "Command-line convention").

* **Names.** ``--model-repository`` (alias ``--repository``) for the model repository,
  ``--url`` (repeatable, ``HOST:PORT``) and ``--metrics-url`` for a running server, ``--out``
  for where files are written.
* **Values.** Durations are ``90s``, ``5m``, ``1h``, ``250ms`` or plain seconds; lists are
  repeated flags.
* **Positions.** ``--json``, ``--verbose`` and ``--quiet`` go before or after the subcommand.
* **Every tool** has ``--version``, and one table of exit codes (:class:`ExitCode`).
* **Errors** are one line that names the problem and points at ``--help``.
* **Tab completion** of commands and flags in bash and zsh, through argcomplete (:func:`complete`).

Standard library only: the client and the launcher import it, and nothing else of the project.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from enum import IntEnum
from pathlib import Path
from typing import NoReturn

from tritonstack import __version__


class ExitCode(IntEnum):
    """What every tool's exit status means; each tool names its own cases in ``--help``."""

    OK = 0
    CHECK_FAILED = 1   # a check, an SLO, a gate or a request failed
    USAGE = 2          # bad command line or input
    ENVIRONMENT = 3    # something outside is missing: a server, a GPU, a writable folder
    INTERNAL = 4       # a bug (the traceback with --verbose)
    INTERRUPTED = 130  # Ctrl-C


_MEANING = {
    ExitCode.OK: "ok",
    ExitCode.CHECK_FAILED: "a check failed",
    ExitCode.USAGE: "usage or bad input",
    ExitCode.ENVIRONMENT: "environment",
    ExitCode.INTERNAL: "internal error (a bug; --verbose shows the traceback)",
    ExitCode.INTERRUPTED: "interrupted",
}


def exit_codes_epilog(cases: Mapping[ExitCode, str] | None = None) -> str:
    """The ``--help`` line of exit codes: the shared table, with the tool's own cases."""
    cases = cases or {}
    parts = [f"{int(code)} {_MEANING[code]}" + (f" ({cases[code]})" if code in cases else "")
             for code in ExitCode]
    return "exit codes: " + ", ".join(parts) + "."


_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*$")
_UNIT_S = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def duration(text: str) -> float:
    """Seconds from ``90s``, ``5m``, ``1h``, ``250ms`` or plain seconds (``30``, ``0.5``)."""
    match = _DURATION.match(str(text))
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration; write it as 90s, 5m, 1h, 250ms or "
                                         "plain seconds")
    seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    if not math.isfinite(seconds):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite duration")
    return seconds


def positive_duration(text: str) -> float:
    """A :func:`duration` above zero (timeouts, intervals)."""
    seconds = duration(text)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be above zero")
    return seconds


def whole_seconds(text: str) -> int:
    """A :func:`duration` of whole seconds (what tritonserver's ``*-secs`` flags take)."""
    seconds = duration(text)
    if seconds != int(seconds):
        raise argparse.ArgumentTypeError(f"{text!r} must be whole seconds")
    return int(seconds)


def int_in(low: int, high: int) -> Callable[[str], int]:
    """An integer option bounded to ``low..high``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is outside {low}..{high}")
        return value

    parse.__name__ = f"int in {low}..{high}"
    return parse


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors; ``hint`` is appended to an error about unknown arguments."""

    def __init__(self, *args, hint: str = "", **kwargs) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        # A prefix of a flag is not that flag: scripts keep working when a longer flag is added.
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self.hint = hint

    def error(self, message: str) -> NoReturn:
        if self.hint and message.startswith("unrecognized arguments"):
            message = f"{message}; {self.hint}"
        self.exit(int(ExitCode.USAGE), f"{self.prog}: error: {message} (see --help)\n")


_GLOBAL_FLAGS = (
    ("--json", "print the result as JSON"),
    ("--verbose", "show tracebacks on errors"),
    ("--quiet", "no progress output"),
)


def _add_global_flags(parser: argparse.ArgumentParser, *, late: bool, json: bool) -> None:
    group = parser.add_argument_group("global flags (before or after the command)")
    for flag, text in _GLOBAL_FLAGS:
        # After the command, an absent flag must not reset one given before it. A command with no
        # JSON form takes --json unlisted, so that Tool.parse refuses it by name.
        default = argparse.SUPPRESS if late else False
        shown = text if json or flag != "--json" else argparse.SUPPRESS
        group.add_argument(flag, action="store_true", default=default, help=shown)


class Tool:
    """A tool's parser: global flags in either position, ``--version`` and its commands.

    ``json_commands`` are those with a JSON form; ``--json`` elsewhere is a usage error rather
    than silently ignored.
    """

    def __init__(self, prog: str, description: str, *, epilog: str = "", hint: str = "") -> None:
        self.parser = Parser(prog=prog, description=description, epilog=epilog, hint=hint)
        self.parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
        _add_global_flags(self.parser, late=False, json=True)
        self._commands = self.parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
        self.json_commands: set[str] = set()
        self.hint = hint
        self._shared: list[Callable[[argparse.ArgumentParser], None]] = []

    def shared(self, add: Callable[[argparse.ArgumentParser], None]) -> None:
        """Options every command takes, before or after the command's name (e.g. ``--url``);
        call before adding commands."""
        add(self.parser)
        self._shared.append(add)

    def command(self, name: str, *, help: str, json: bool = False, parents: Sequence[argparse.ArgumentParser] = (),
                **kwargs) -> Parser:
        """A subcommand; ``json=True`` when it prints a JSON form with ``--json``."""
        parser = self._commands.add_parser(name, help=help, parents=list(parents), hint=self.hint, **kwargs)
        _add_global_flags(parser, late=True, json=json)
        for add in self._shared:
            before = len(parser._actions)
            add(parser)
            for action in parser._actions[before:]:
                if action.help and "%(default)s" in action.help:  # argparse drops a suppressed default
                    action.help = action.help.replace("%(default)s", str(action.default))
                action.default = argparse.SUPPRESS  # absent after the command: keep what came before
        if json:
            self.json_commands.add(name)
        return parser

    def parse(self, argv: Sequence[str] | None = None) -> argparse.Namespace:
        complete(self.parser)
        args = self.parser.parse_args(list(sys.argv[1:] if argv is None else argv))
        if args.json and args.command not in self.json_commands:
            self.parser.error(f"'{args.command}' has no JSON output; drop --json")
        return args


def complete(parser: argparse.ArgumentParser) -> None:
    """Answer the shell's tab completion and exit, when the shell asks (argcomplete's protocol:
    ``eval "$(register-python-argcomplete tritonstack-loadtest)"``, README). Nothing otherwise, and
    nothing where argcomplete is not installed."""
    if "_ARGCOMPLETE" not in os.environ:
        return
    try:
        import argcomplete
    except ImportError:
        return
    argcomplete.autocomplete(parser)


def add_model_repository(parser: argparse.ArgumentParser, *, required: bool = False,
                         default: Path | None = Path("model_repository"), help: str = "") -> None:
    """``--model-repository DIR`` (alias ``--repository``)."""
    text = help or "the Triton model repository"
    if not required and default is not None:
        text += " (default: %(default)s)"
    parser.add_argument("--model-repository", "--repository", dest="model_repository", type=Path, metavar="DIR",
                        required=required, default=None if required else default, help=text)


def add_url(parser: argparse.ArgumentParser, *, help: str = "") -> None:
    """``--url HOST:PORT``, repeatable (replicas), Triton's gRPC endpoint."""
    parser.add_argument("--url", action="append", metavar="HOST:PORT",
                        help=help or "Triton gRPC endpoint; repeat for replicas (default: TRITON_GRPC_URLS, "
                        "else 127.0.0.1:8001)")


def add_metrics_url(parser: argparse.ArgumentParser, *, help: str = "", repeatable: bool = False) -> None:
    """``--metrics-url URL``: Triton's Prometheus endpoint."""
    parser.add_argument("--metrics-url", action="append" if repeatable else "store", metavar="URL",
                        help=help or "Triton metrics URL (default: port 8002 of --url's host)")


def add_out(parser: argparse.ArgumentParser, *, default: Path | None, help: str) -> None:
    """``--out DIR``: where the command writes its files."""
    parser.add_argument("--out", type=Path, metavar="DIR", default=default,
                        help=help + (" (default: %(default)s)" if default is not None else ""))
