"""The claims README.md and docs/*.md make that a script can check, checked against the code.

* every ``make X`` they name is a target of the Makefile;
* the ports they give for HTTP, gRPC, metrics and the launcher's health endpoint are the
  launcher's defaults (``python -m tritonstack.server serve --help``);
* the number of alert rules they state is the number of ``alert:`` rules in
  ``docker/monitoring/alerts.yml``;
* every environment variable they name that the code reads is documented in ``.env.example``;
* every relative link (and ``#anchor``) resolves, and every repository path named exists;
* the README stays a guide (at most 320 lines);
* every documented ``python -m tritonstack.<tool> <command> --flag`` names a command and flags
  that the tool's ``--help`` lists (docs/loadtest.md is left out here: its command names are
  maintained with the load-test tool).
"""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
# Pages whose command lines are kept to the command-line convention by this test.
FLAG_PAGES = [README, *(page for page in DOCS if page.name != "loadtest.md")]
TOOLS = ("converters", "ensembles", "server", "client", "rollout", "loadtest", "http")
MAX_README_LINES = 320


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


# -- markdown ------------------------------------------------------------------------------------

_FENCE = re.compile(r"^(```|~~~)[^\n]*\n(.*?)^\1[ \t]*$", re.S | re.M)


def _code_blocks(text: str) -> list[str]:
    """Fenced blocks, with backslash continuations joined."""
    return [re.sub(r"\\\n\s*", " ", match.group(2)) for match in _FENCE.finditer(text)]


def _prose(text: str) -> str:
    return _FENCE.sub("", text)


def _inline_code(text: str) -> list[str]:
    """Inline code spans outside fenced blocks; a span may wrap over lines."""
    return [re.sub(r"\s*\n\s*", " ", span) for span in re.findall(r"`([^`]+)`", _prose(text))]


def _code(text: str) -> list[str]:
    """Every line of code on a page: fenced lines and inline spans."""
    lines = [line for block in _code_blocks(text) for line in block.splitlines()]
    return lines + _inline_code(text)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", _prose(page.read_text()), flags=re.M):
        slug = _slug(heading)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


# -- make targets --------------------------------------------------------------------------------

def _make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z][\w-]*)\s*:(?!=)", text, flags=re.M))


def test_every_make_target_named_exists() -> None:
    targets = _make_targets()
    assert {"demo", "test"} <= targets
    named = {(_rel(page), target)
             for page in PAGES for line in _code(page.read_text())
             for target in re.findall(r"(?:^|[\s;&|(])make ([a-z][\w-]*)", line)}
    assert named, "no make target found in the docs: the extraction is broken"
    missing = sorted((page, target) for page, target in named if target not in targets)
    assert missing == [], f"make targets the docs name but the Makefile lacks: {missing}"


# -- ports ---------------------------------------------------------------------------------------

@functools.cache
def _help(module: str, *argv: str) -> str:
    """``python -m MODULE ARGV --help``, stdout and stderr."""
    result = subprocess.run([sys.executable, "-m", module, *argv, "--help"], cwd=ROOT, capture_output=True,
                            text=True, timeout=180)
    return result.stdout + result.stderr


def _help_entries(help_text: str) -> list[str]:
    """One string per option of a --help: its line and the indented lines under it."""
    return re.findall(r"^ {2,}-.*?(?=^ {2,}-|^\S|^$|\Z)", help_text, flags=re.M | re.S)


def _launcher_ports() -> dict[str, int]:
    """The defaults `python -m tritonstack.server serve --help` gives (tritonstack/server/cli.py)."""
    entries = _help_entries(_help("tritonstack.server", "serve"))
    ports = {}
    for kind, flag in (("http", "--http-port"), ("grpc", "--grpc-port"), ("metrics", "--metrics-port"),
                       ("health", "--health-port")):
        entry = next((e for e in entries if re.match(rf"\s*{flag}\b", e)), "")
        match = re.search(r"default:\s*(\d+)", entry)
        assert match, f"no default for {flag} in `python -m tritonstack.server serve --help`"
        ports[kind] = int(match.group(1))
    return ports


_PORT_WORDS = {"http": r"HTTP", "grpc": r"gRPC", "metrics": r"metrics", "health": r"(?:health|readiness)"}


def _port_claims(text: str) -> list[tuple[str, int, str]]:
    """(kind, port, context) for "HTTP 8000", "gRPC on 8001", "`--health-port` (8003", "8002 metrics"...
    (a port written as part of an address, ``127.0.0.1:8003/v2/health``, is not a claim here)."""
    claims = []
    for kind, word in _PORT_WORDS.items():
        after = re.compile(rf"\b{word}\b[^\d/|]{{0,25}}?\b(800\d)\b", re.I)
        before = re.compile(rf"\b(800\d)\b[\s`]+{word}\b", re.I)
        for pattern in (after, before):
            for match in pattern.finditer(text):
                claims.append((kind, int(match.group(1)), match.group(0)))
    return claims


def test_documented_ports_are_the_launchers_defaults() -> None:
    ports = _launcher_ports()
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002, "health": 8003}, ports
    readme_kinds = {kind for kind, _, _ in _port_claims(README.read_text())}
    assert readme_kinds == set(ports), f"the README states no port for {set(ports) - readme_kinds}"
    wrong = sorted({(_rel(page), kind, port, context)
                    for page in PAGES for kind, port, context in _port_claims(page.read_text())
                    if port != ports[kind]})
    assert wrong == [], f"ports the docs give that are not the launcher's defaults {ports}: {wrong}"


# -- alert rules ---------------------------------------------------------------------------------

_NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
            "nine": 9, "ten": 10, "eleven": 11, "twelve": 12}


def _number(word: str) -> int:
    return int(word) if word.isdigit() else _NUMBERS[word.lower()]


def test_the_stated_number_of_alert_rules_is_the_rules_file() -> None:
    rules = re.findall(r"^\s*- alert:\s*(\w+)", (ROOT / "docker" / "monitoring" / "alerts.yml").read_text(),
                       flags=re.M)
    assert len(rules) == len(set(rules)) and rules
    pattern = re.compile(r"\b(\d+|" + "|".join(_NUMBERS) + r")\s+(?:Prometheus\s+)?(?:alert(?:ing)?\s+)?rules\b",
                         re.I)
    stated = [(_rel(page), match.group(0)) for page in PAGES for match in pattern.finditer(page.read_text())]
    assert any(page == "README.md" for page, _ in stated), "the README states no number of alert rules"
    wrong = [(page, claim) for page, claim in stated if _number(claim.split()[0]) != len(rules)]
    assert wrong == [], f"docker/monitoring/alerts.yml has {len(rules)} rules ({', '.join(rules)}): {wrong}"
    monitoring = (ROOT / "docs" / "monitoring.md").read_text()
    unlisted = [rule for rule in rules if rule not in monitoring]
    assert unlisted == [], f"alert rules docs/monitoring.md does not describe: {unlisted}"


# -- environment variables -----------------------------------------------------------------------

# Read by the code, but set by the stack itself or the operating system, not by a user.
_NOT_SETTINGS = {
    "PATH", "LD_LIBRARY_PATH", "PYTHONPATH", "HOME", "PYTHONHASHSEED", "PYENV_ROOT",
    "LOADTEST_PLAN",               # the loadtest runner hands its plan to its Locust processes
    "TRITON_STACK_EMULATED_CPU",   # converters verify --emulate-cpu sets it for its QEMU child
    "TOKENIZERS_PARALLELISM",      # the runner sets it for the tokenizers library
}
_ENV_NAME = r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*"


def _variables_read_by_code() -> tuple[set[str], set[str]]:
    """(names, prefixes): what the code reads from the environment."""
    names, prefixes = set(), set()
    python = [*(ROOT / "tritonstack").rglob("*.py"), *(ROOT / "docker").rglob("*.py"),
              *(ROOT / "scripts").glob("*.py"), ROOT / "tests" / "conftest.py"]
    for path in python:
        text = path.read_text()
        if "environ" not in text and "getenv" not in text:
            continue
        names.update(re.findall(rf"(?:environ(?:\.get|\.setdefault)?\s*[(\[]\s*|getenv\(\s*)[\"']({_ENV_NAME})[\"']",
                                text))
        names.update(re.findall(rf"^\w*_ENV\s*=\s*[\"']({_ENV_NAME})[\"']", text, flags=re.M))
        prefixes.update(re.findall(r"f[\"']([A-Z][A-Z0-9_]*_)\{", text))
    for path in [*(ROOT / "docker").rglob("*.sh"), *(ROOT / "scripts").glob("*.sh")]:
        names.update(re.findall(rf"\$\{{({_ENV_NAME}):-", path.read_text()))  # ${NAME:-default}: an option
    return names - _NOT_SETTINGS, prefixes


def test_every_environment_variable_the_docs_name_is_in_env_example() -> None:
    names, prefixes = _variables_read_by_code()
    assert {"TRITON_ACCESS_TOKEN", "TRITON_GRPC_URLS", "TRITONSERVER"} <= names, names
    documented = set(re.findall(_ENV_NAME, (ROOT / ".env.example").read_text()))
    named: dict[str, set[str]] = {}
    for page in PAGES:
        for word in re.findall(rf"\b{_ENV_NAME}\b", page.read_text()):
            if word in names or any(word.startswith(prefix) and word != prefix for prefix in prefixes):
                named.setdefault(word, set()).add(_rel(page))
    assert "TRITON_ACCESS_TOKEN" in named
    missing = {name: sorted(pages) for name, pages in named.items() if name not in documented}
    assert missing == {}, f"variables the docs name and the code reads, missing from .env.example: {missing}"


# -- links ---------------------------------------------------------------------------------------

def test_every_relative_link_resolves() -> None:
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", _prose(page.read_text())):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append((_rel(page), target, "no such file"))
            elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
                broken.append((_rel(page), target, "no such heading"))
    assert broken == [], f"links that do not resolve: {broken}"


_REPO_PATH = re.compile(r"(?<![\w/.-])((?:tritonstack|docker|tests|scripts|docs|\.ci)/[\w./-]*[\w/])")


def test_every_repository_path_named_exists() -> None:
    """``tritonstack/...``, ``docker/...``, ``tests/...`` and the like, outside placeholders and globs."""
    missing = []
    for page in FLAG_PAGES:
        for match in _REPO_PATH.finditer(page.read_text()):
            path = match.group(1).split("::")[0]
            if "*" in path or re.search(r"[A-Z]{3,}", path):  # a glob, or a placeholder such as VERSION/
                continue
            if not (ROOT / path).exists():
                missing.append((_rel(page), path))
    assert missing == [], f"paths the docs name that do not exist: {sorted(set(missing))}"


def test_the_readme_is_a_guide_not_a_log() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines (at most {MAX_README_LINES})"
    assert "docs/benchmarks.md" in README.read_text()


# -- documented command lines --------------------------------------------------------------------

@dataclass(frozen=True)
class Documented:
    page: str
    module: str
    argv: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.page}: python -m {self.module} {' '.join(self.argv)}".strip()


_COMMAND = re.compile(r"python3? -m (tritonstack(?:\.[a-z_][a-z0-9_]*)+)(.*)")


def _documented_commands() -> list[Documented]:
    found = []
    for page in FLAG_PAGES:
        for line in _code(page.read_text()):
            for match in _COMMAND.finditer(line):
                rest = match.group(2)
                rest = re.split(r"\s#|\s&&\s|\s\|\s|;|\s>\s|\spython3? -m ", rest)[0]
                argv = tuple(token.strip("[](),`'\"") for token in rest.split())
                found.append(Documented(_rel(page), match.group(1), tuple(t for t in argv if t)))
    return found


_OPTION = re.compile(r"^\s{2,}(-[\w-]+(?:[ =][^\s,]+)?(?:, -[\w-]+(?:[ =][^\s,]+)?)*)", re.M)


def _options(help_text: str) -> dict[str, bool]:
    """Every option a --help lists, and whether it takes a value."""
    options = {}
    for match in _OPTION.finditer(help_text):
        for item in match.group(1).split(", "):
            flag, _, metavar = item.partition(" ")
            options[flag] = bool(metavar)
    return options


def _commands(help_text: str) -> set[str]:
    """Subcommands a tool's --help lists (argparse's `{a,b}` or its indented COMMAND list)."""
    listed = set(re.findall(r"^ {4}([a-z][\w-]*)(?:\s|$)", help_text, flags=re.M))
    for group in re.findall(r"\{([a-z][\w,-]*)\}", help_text):
        listed.update(group.split(","))
    return listed


def _is_placeholder(token: str) -> bool:
    return token in {"...", "…"} or bool(re.fullmatch(r"[A-Z][A-Z0-9_|.]*|<[^>]+>|\{.*\}", token))


def _check(doc: Documented) -> list[str]:
    """What in one documented command line its tool's --help does not list."""
    problems: list[str] = []
    argv = list(doc.argv)
    if "--" in argv:
        argv = argv[:argv.index("--")]  # raw tritonserver flags follow
    tool = doc.module.split(".", 1)[1]
    if tool not in TOOLS:  # a module with its own parser (a benchmark)
        flags = [a.split("=")[0] for a in argv if a.startswith("--")]
        if flags:
            known = _options(_help(doc.module))
            problems += [f"{flag} (not in `python -m {doc.module} --help`)" for flag in flags if flag not in known]
        return problems

    top = _help(doc.module)
    top_options, commands = _options(top), _commands(top)
    i, command = 0, None
    while i < len(argv):
        token = argv[i]
        if token.startswith("-"):
            flag = token.split("=")[0]
            if flag not in top_options and flag not in ("-h", "--help"):
                problems.append(f"{flag} before the command (not in `python -m {doc.module} --help`)")
            takes_value = top_options.get(flag)
            if takes_value is None:  # unknown: it takes a value if one follows that is not a command
                takes_value = i + 1 < len(argv) and not argv[i + 1].startswith("-") and argv[i + 1] not in commands
            i += 2 if takes_value and "=" not in token else 1
            continue
        command = token
        break
    if command is None:
        return problems
    rest = [a.split("=")[0] for a in argv[i + 1:] if a.startswith("--")]
    names = command.split("|") if "|" in command and not _is_placeholder(command) else [command]
    for name in names:
        if name in commands:
            known = _options(_help(doc.module, name))
            problems += [f"{flag} (not in `python -m {doc.module} {name} --help`)"
                         for flag in rest if flag not in known]
        elif _is_placeholder(name):
            known = set(top_options).union(*(_options(_help(doc.module, c)) for c in sorted(commands)))
            problems += [f"{flag} (in no command of `python -m {doc.module}`)" for flag in rest if flag not in known]
        else:
            problems.append(f"command {name!r} (not in `python -m {doc.module} --help`: {sorted(commands)})")
    return problems


def test_documented_commands_use_the_flags_their_help_lists() -> None:
    documented = _documented_commands()
    modules = {doc.module for doc in documented}
    assert {f"tritonstack.{tool}" for tool in TOOLS} <= modules, modules
    for tool in TOOLS:
        assert _commands(_help(f"tritonstack.{tool}")), f"`python -m tritonstack.{tool} --help` lists no command"
    problems = sorted({f"{doc}\n      -> {problem}" for doc in documented for problem in _check(doc)})
    assert problems == [], "documented command lines that the tools do not accept:\n" + "\n".join(problems)


@pytest.mark.parametrize("text", ["`make demo`", "```bash\nmake test   # all of it\n```"])
def test_the_extraction_finds_make_targets(text: str) -> None:
    found = {t for line in _code(text) for t in re.findall(r"(?:^|[\s;&|(])make ([a-z][\w-]*)", line)}
    assert found and found <= {"demo", "test"}


def test_the_extraction_splits_commands_and_raw_flags() -> None:
    doc = Documented("x", "tritonstack.server",
                     ("serve", "--model-repository", "m", "--", "--backend-config=python,a=1"))
    assert "--backend-config" not in " ".join(_check(doc))
    assert _slug("INT8 on every CPU: MiniLM `s8` against `u8`") == "int8-on-every-cpu-minilm-s8-against-u8"
    assert _slug("Drift monitoring's cost") == "drift-monitorings-cost"
