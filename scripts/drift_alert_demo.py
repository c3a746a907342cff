"""The drift alert end to end on the demo repository: a real Prometheus with the stack's rules
(docker/monitoring/alerts.yml) scrapes a Triton serving the repository; the `drift-normal`
campaign runs, then the `drift` campaign. After each, the script waits past the alert's
`for: 1m` and prints the alerts. Expected: none after the normal traffic, TritonModelDrift
firing for the features that moved after the shifted traffic.

    python scripts/drift_alert_demo.py --model-repository DIR     # about 4 minutes

Needs Debian's prometheus (make venv installs it). Exit 0 when both expectations hold.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "docker" / "monitoring" / "alerts.yml"
FOR_S = 75  # the rule's `for: 1m`, plus scrapes and evaluations


def _alerts(url: str) -> list[dict]:
    with urllib.request.urlopen(f"{url}/api/v1/alerts", timeout=5) as response:
        return [a for a in json.loads(response.read())["data"]["alerts"]
                if a["labels"]["alertname"] == "TritonModelDrift"]


def _psi(url: str) -> dict[str, float]:
    query = urllib.parse.urlencode({"query": "triton_stack_drift_psi"})
    with urllib.request.urlopen(f"{url}/api/v1/query?{query}", timeout=5) as response:
        rows = json.loads(response.read())["data"]["result"]
    return {f"{r['metric']['model']}/{r['metric']['feature']}": round(float(r["value"][1]), 3) for r in rows}


def _campaign(name: str, grpc: str, metrics: str) -> None:
    subprocess.run([sys.executable, "-m", "tritonstack.loadtest", "run", name, "--url", grpc, "--metrics-url", metrics,
                    "--quiet"], cwd=ROOT, check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-repository", type=Path, default=ROOT / "model_repository")
    args = parser.parse_args()
    if shutil.which("prometheus") is None:
        print("prometheus not found: install Debian's prometheus (make venv does, as root)", file=sys.stderr)
        return 3
    sys.path.insert(0, str(ROOT))
    from tritonstack.server import ServerConfig, TritonServer
    from tritonstack.server.process import free_port

    with tempfile.TemporaryDirectory() as tmp, TritonServer(ServerConfig(
            model_repository=args.model_repository, grpc_port=0, http_port=0, metrics_port=0)) as triton:
        port = free_port()
        config = Path(tmp) / "prometheus.yml"
        config.write_text(json.dumps({
            "global": {"scrape_interval": "2s", "evaluation_interval": "2s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [{"job_name": "triton", "static_configs": [
                {"targets": [urllib.parse.urlparse(triton.metrics_url).netloc]}]}]}))
        command = ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp}/data",
                   f"--web.listen-address=127.0.0.1:{port}"]
        prometheus = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            time.sleep(3)
            verdicts = []
            for name, expect_firing in (("drift-normal", False), ("drift", True)):
                _campaign(name, triton.grpc_url, triton.metrics_url)
                time.sleep(FOR_S)
                alerts = _alerts(url)
                firing = sorted(f"{a['labels']['model']}/{a['labels']['feature']}" for a in alerts
                                if a["state"] == "firing")
                print(f"after {name}: PSI {_psi(url)}")
                print(f"after {name}: TritonModelDrift firing for {firing or 'nothing'}")
                verdicts.append(bool(firing) == expect_firing)
        finally:
            prometheus.terminate()
            prometheus.wait(timeout=30)
    ok = all(verdicts)
    print("PASS: quiet after normal traffic, firing after shifted traffic" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
