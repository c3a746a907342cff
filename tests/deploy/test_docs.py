"""docs/deployment.md's shell commands are the ones written in the deployment files."""

from __future__ import annotations

import re

from tests.deploy.conftest import ROOT

DOC = ROOT / "docs" / "deployment.md"


def _normalise(text: str) -> str:
    text = re.sub(r"\\\n\s*", " ", text)  # join continuation lines
    return re.sub(r"[ \t]+", " ", text.replace("#", " "))


def _doc_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", DOC.read_text(), flags=re.S)
    commands = []
    for block in blocks:
        for line in _normalise(block).splitlines():
            command = line.split("  ")[0].strip()  # drop a trailing comment
            if command.startswith(("docker ", "kubectl ", "cp ")):
                commands.append(command)
    return commands


def test_deployment_commands_match_the_files() -> None:
    sources = [*(ROOT / "docker").rglob("*.y*ml"), *(ROOT / "docker").glob("Dockerfile.*"),
               ROOT / ".env.example"]
    corpus = "\n".join(_normalise(p.read_text()) for p in sources)
    commands = _doc_commands()
    assert len(commands) >= 8
    missing = [c for c in commands if c not in corpus]
    assert missing == [], "commands in docs/deployment.md that no deployment file contains"
