"""Rollouts on the demo repository, end to end, under Locust load: two new versions of the
digits CNN are exported, then

1. a canary of the good one (a retrain) advances 5 -> 25 -> 50 -> 100 % and is promoted;
2. a canary of a broken one (``mislabelled``: every label shifted by one, yet through the export's
   gates) rolls back by itself at its first step, on the agreement SLO;
3. a shadow run compares the previous version with the promoted one and writes its report;

while the ``rollout`` campaign sends classify_digit traffic from 1,000 users with their
``rollout_key`` the whole time, and must see no failed request.

    python scripts/rollout_demo.py --model-repository DIR      # about 4 minutes

Each command is printed before it runs: they are the README's. Exit 0 when every expectation
holds; reports land in reports/rollout/ and reports/loadtest/.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = "digits_cnn"


def _show(argv: list[str]) -> None:
    print("\n$ " + " ".join(shlex.quote(a) for a in ["python", *argv[1:]]), flush=True)


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    _show(argv)
    result = subprocess.run(argv, cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines = result.stdout.splitlines()
    for line in (lines if len(lines) <= 12 else [*lines[:3], "  ...", *lines[-8:]]):
        print("  " + line)
    print(f"  (exit {result.returncode})", flush=True)
    return result


def _export(repository: Path, source: str) -> int:
    argv = [sys.executable, "-m", "tritonstack.converters", "export", f"tritonstack.converters.sources.digits:{source}",
            "--name", MODEL, "--precision", "int8", "--int8-mode", "static", "--max-batch-size", "256",
            "--instances", "1", "--intra-op-threads", "1", "--max-queue-size", "1024", "--keep", "4",
            "--model-repository", str(repository), "--json", "--quiet"]
    _show(argv)
    result = subprocess.run(argv, cwd=ROOT, text=True, capture_output=True)
    if result.returncode:
        print(result.stderr, file=sys.stderr)
        raise SystemExit(result.returncode)
    version = json.loads(result.stdout)["models"][0]["version"]
    print(f"  -> {MODEL} version {version}", flush=True)
    return version


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--hold", default="15s", help="time at each canary step (default: 15s)")
    args = parser.parse_args()
    repository = args.model_repository.resolve()
    if not (repository / MODEL / "config.pbtxt").is_file() or not (repository / "classify_digit").is_dir():
        print(f"RepositoryNotFound: {repository} has no demo pipelines; build it first (make repository)",
              file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT))
    from tritonstack.server import ServerConfig, TritonServer

    with TritonServer(ServerConfig(model_repository=repository, grpc_port=0, http_port=0, metrics_port=0,
                                   model_control="explicit", load_models=("*",))) as triton:
        where = ["--model-repository", str(repository), "--url", triton.grpc_url, "--metrics-url",
                 triton.metrics_url]
        rollout = [sys.executable, "-m", "tritonstack.rollout"]
        pinned = _run([*rollout, "pin", MODEL, *where])
        if pinned.returncode:
            return pinned.returncode
        primary = int(pinned.stdout.split(": v")[1].split()[0])
        good, broken = _export(repository, "retrained"), _export(repository, "mislabelled")

        load_argv = [sys.executable, "-m", "tritonstack.loadtest", "run", "rollout", "--url", triton.grpc_url,
                     "--metrics-url", triton.metrics_url, "--quiet"]
        _show(load_argv)
        print("  (in the background, for 203 s)", flush=True)
        load = subprocess.Popen(load_argv, cwd=ROOT, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        try:
            time.sleep(5)
            promote = _run([*rollout, "canary", MODEL, "--candidate", str(good), "--steps", "5,25,50,100",
                            "--hold", args.hold, *where])
            rollback = _run([*rollout, "canary", MODEL, "--candidate", str(broken), "--steps",
                             "5,25,50,100", "--hold", args.hold, *where])
            # the version served before the canary, now beside the promoted one: how far apart?
            shadow = _run([*rollout, "shadow", MODEL, "--candidate", str(primary if promote.returncode == 0
                                                                          else good),
                           "--duration", "30s", *where])
            out, _ = load.communicate(timeout=400)
        finally:
            if load.poll() is None:
                load.kill()
        print("\n".join("  " + line for line in out.splitlines()[-12:]))
        print(f"  (load test exit {load.returncode})")
    checks = {
        f"canary of v{good} promoted (exit 0)": promote.returncode == 0 and "promoted" in promote.stdout,
        f"canary of the broken v{broken} rolled back by itself (exit 1)":
            rollback.returncode == 1 and "RolledBack: agreement" in rollback.stdout,
        "shadow report written (exit 0)": shadow.returncode == 0 and "report:" in shadow.stdout,
        "no request failed under the load (its SLO error_rate <= 0 held: exit 0)": load.returncode == 0,
    }
    print()
    for what, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {what}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
