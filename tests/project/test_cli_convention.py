"""Every command of the six tools holds to the one convention (tritonstack/cli.py; README,
"Command-line convention"): the same names for the same things, durations in one syntax, global
flags before or after the command, ``--version``, one table of exit codes and ``--help`` that
prints what it means (issue #33: six tools disagreed on all of these)."""

from __future__ import annotations

import argparse
import importlib
import re

import pytest

from tritonstack import __version__
from tritonstack.cli import ExitCode, Tool, duration, positive_duration, whole_seconds

TOOLS = ("converters", "ensembles", "server", "client", "rollout", "loadtest", "http")
DURATION_TYPES = (duration, positive_duration, whole_seconds)
# Names the tools used for things the convention names otherwise (issue #33).
RETIRED = {"--grpc": "--url", "--metrics": "--metrics-url", "--report-dir": "--out", "--reports": "--out",
           "--save": "--out", "--seconds": "--duration"}
TIME_WORDS = ("timeout", "interval", "hold", "duration", "delay-s", "window")


def _tool(name: str) -> Tool:
    return importlib.import_module(f"tritonstack.{name}.cli").build_tool()


def _commands(tool: Tool) -> dict[str, argparse.ArgumentParser]:
    (sub,) = [a for a in tool.parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings]


@pytest.mark.parametrize("name", TOOLS)
def test_every_tool_prints_its_version(name, capsys) -> None:
    with pytest.raises(SystemExit) as done:
        _tool(name).parse(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip().endswith(__version__)


@pytest.mark.parametrize("name", TOOLS)
def test_help_shows_the_one_exit_code_table_and_no_escaped_percent(name, capsys) -> None:
    tool = _tool(name)
    table = (r"exit codes: 0 ok,.* 1 a check failed.* 2 usage or bad input.* 3 environment.* 4 internal error.* "
             r"130 interrupted")
    assert re.search(table, " ".join(tool.parser.format_help().split()))
    for command, parser in _commands(tool).items():
        text = parser.format_help()
        assert "%%" not in text and "%(" not in text, f"{name} {command}"


@pytest.mark.parametrize("name", TOOLS)
def test_the_same_things_have_the_same_names(name) -> None:
    for command, parser in _commands(_tool(name)).items():
        where = f"{name} {command}"
        for action in _options(parser):
            names = set(action.option_strings)
            retired = names & set(RETIRED)
            assert not retired, f"{where}: {sorted(retired)} is {RETIRED[sorted(retired)[0]]} by the convention"
            if "--repository" in names or action.dest in ("repository", "model_repository"):
                assert "--model-repository" in names and action.dest == "model_repository", where
            if "--url" in names:
                assert action.metavar == "HOST:PORT" and action.dest == "url", where
            if action.dest == "out" or "--out" in names:
                assert action.option_strings[0] == "--out", where


@pytest.mark.parametrize("name", TOOLS)
def test_every_time_option_takes_90s_5m_and_plain_seconds(name) -> None:
    for command, parser in _commands(_tool(name)).items():
        for action in _options(parser):
            flag = action.option_strings[0]
            if any(word in flag for word in TIME_WORDS) and not flag.endswith(("-ms", "-us")):
                assert action.type in DURATION_TYPES, f"{name} {command} {flag} takes {action.type}"
                assert action.metavar == "DURATION", f"{name} {command} {flag}"


@pytest.mark.parametrize("name", TOOLS)
def test_global_flags_go_before_or_after_every_command(name) -> None:
    tool = _tool(name)
    for command, parser in _commands(tool).items():
        flags = {a.option_strings[0]: a for a in _options(parser)}
        for flag in ("--verbose", "--quiet"):
            assert flag in flags and flags[flag].default is argparse.SUPPRESS, f"{name} {command} {flag}"
        assert flags["--json"].default is argparse.SUPPRESS, f"{name} {command}"
        if command not in tool.json_commands:  # taken, to refuse it by name rather than ignore it
            assert flags["--json"].help is argparse.SUPPRESS, f"{name} {command}"


@pytest.mark.parametrize(("name", "argv", "expected"), [
    ("client", ["embed", "--json", "hi"], {"json": True, "texts": ["hi"]}),
    ("client", ["--json", "embed", "hi", "--url", "h:1", "--timeout", "2m"], {"json": True, "url": ["h:1"],
                                                                          "timeout": 120.0}),
    ("client", ["--url", "h:1", "health"], {"url": ["h:1"], "json": False}),
    ("client", ["--verbose", "models", "--json"], {"verbose": True, "json": True}),
    ("loadtest", ["run", "smoke", "--verbose"], {"verbose": True, "campaign": "smoke"}),
    ("converters", ["--json", "verify", "--repository", "r"], {"json": True}),
    ("rollout", ["canary", "m", "--candidate", "2", "--hold", "90s", "--verbose"], {"hold": 90.0, "verbose": True}),
    ("server", ["serve", "--model-control-mode", "poll", "--repository-poll-secs", "1m"],
     {"model_control": "poll", "poll_interval": 60}),
])
def test_examples_parse_as_a_user_types_them(name, argv, expected) -> None:
    args = vars(_tool(name).parse(argv))
    assert {k: args[k] for k in expected} == expected
    if name == "converters":
        assert str(args["model_repository"]) == "r"


@pytest.mark.parametrize(("name", "argv", "message"), [
    ("ensembles", ["build", "--json"], "'build' has no JSON output"),
    ("client", ["embed", "hi", "--timeout", "soon"], "'soon' is not a duration"),
    ("server", ["serve", "--ready-timeout", "0"], "must be above zero"),
    ("server", ["serve", "--no-such-flag"], "tritonserver's own flags go after --"),
    ("converters", ["bench", "r/m", "--batch", "100000000"], "100000000 is outside 1..4096"),
    # a prefix is not the flag: loadtest's old --metrics would otherwise pass for --metrics-url
    ("loadtest", ["run", "smoke", "--metrics", "http://h:8002/metrics"], "unrecognized arguments: --metrics"),
])
def test_a_usage_error_is_one_line_with_exit_2(name, argv, message, capsys) -> None:
    with pytest.raises(SystemExit) as done:
        _tool(name).parse(argv)
    assert done.value.code == ExitCode.USAGE
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "(see --help)" in err


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90.0), ("5m", 300.0), ("1h", 3600.0), ("250ms", 0.25),
                                               ("30", 30.0), ("0.5", 0.5), (".5s", 0.5)])
def test_durations(text, seconds) -> None:
    assert duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5 minutes", "-3", "1e3", "nan", "inf", "5d"])
def test_what_is_not_a_duration(text) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        duration(text)


@pytest.mark.parametrize("name", TOOLS)
def test_tab_completion_offers_the_commands_and_a_commands_flags(name, tmp_path) -> None:
    """What bash asks after ``eval "$(register-python-argcomplete tritonstack-NAME)"`` (README):
    the installed entry point answers through argcomplete's protocol."""
    import os
    import shutil
    import subprocess
    import sys

    pytest.importorskip("argcomplete", reason="tab completion comes from argcomplete, not installed here")
    script = shutil.which(f"tritonstack-{name}", path=os.path.dirname(sys.executable))
    assert script, f"tritonstack-{name} is not installed beside {sys.executable}"
    commands = _commands(_tool(name))
    command = sorted(commands)[0]

    def complete(line: str) -> set[str]:
        answer = tmp_path / "completion"
        env = {**os.environ, "_ARGCOMPLETE": "1", "COMP_LINE": line, "COMP_POINT": str(len(line)),
               "_ARGCOMPLETE_STDOUT_FILENAME": str(answer)}
        subprocess.run([script], env=env, check=True, timeout=60, stdin=subprocess.DEVNULL)
        return set(answer.read_text().replace("\x0b", " ").split())

    assert set(commands) <= complete(f"tritonstack-{name} ")
    flags = {s for a in _options(commands[command]) if a.help != argparse.SUPPRESS  # e.g. --json, no JSON form
             for s in a.option_strings if s.startswith("--")}
    assert "--verbose" in flags
    assert flags <= complete(f"tritonstack-{name} {command} --")
