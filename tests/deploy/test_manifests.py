"""Kubernetes and KServe manifests validate against schemas; broken ones are caught."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from tests.deploy.conftest import FIXTURES, ROOT, validate

MANIFESTS = validate.default_targets()["manifest"]

pytestmark = pytest.mark.usefixtures("kubernetes_validate_available")


def _docs(name: str) -> list[dict]:
    return validate.load_documents(ROOT / "docker" / name)


def test_expected_resources_are_shipped() -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for p in MANIFESTS for d in validate.load_documents(p)
             if d["kind"] != "Kustomization"}
    for expected in [("Deployment", "triton"), ("Service", "triton"), ("Service", "triton-headless"),
                     ("HorizontalPodAutoscaler", "triton"), ("Job", "locust-master"),
                     ("Job", "locust-worker"), ("Service", "locust-master"),
                     ("Deployment", "tritonstack-http"), ("Service", "tritonstack-http"),
                     ("InferenceService", "triton-stack"), ("ServingRuntime", "triton-stack")]:
        assert expected in kinds


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: str(p.relative_to(ROOT / "docker")))
def test_manifest_validates(manifest: Path) -> None:
    assert validate.check_manifest(manifest) == []


def test_deployment_without_selector_is_caught() -> None:
    problems = validate.check_manifest(FIXTURES / "deployment-no-selector.yaml")
    assert any("'selector' is a required property" in p for p in problems), problems


def test_wrong_type_and_unknown_field_are_caught() -> None:
    problems = "\n".join(validate.check_manifest(FIXTURES / "service-wrong-type.yaml"))
    assert "spec.ports.0.port" in problems  # the validator reports the first error per document
    (service,) = validate.load_documents(FIXTURES / "service-wrong-type.yaml")
    service["spec"]["ports"][0]["port"] = 8000
    problems = "\n".join(validate.validate_document(service, "svc"))
    assert "targetPortt" in problems  # strict mode: unknown fields fail


def test_broken_inferenceservice_is_caught() -> None:
    problems = "\n".join(validate.check_manifest(FIXTURES / "inferenceservice-broken.yaml"))
    assert "storageURI" in problems
    assert "inferenceservice-v1beta1.json" in problems


def test_inferenceservice_core_types_are_checked_against_kubernetes() -> None:
    (isvc,) = _docs("kserve/inferenceservice.yaml")
    bad = copy.deepcopy(isvc)
    bad["spec"]["predictor"]["model"]["resources"] = {"limits": {"nvidia.com/gpu": ["1"]}}
    assert validate.validate_document(bad, "isvc")
    both = copy.deepcopy(isvc)
    both["spec"]["predictor"]["triton"] = {"storageUri": "gs://bucket/models", "runtimeVersion": "24.10-py3"}
    assert validate.validate_document(both, "isvc"), "model and triton together must be rejected"
    stock = copy.deepcopy(both)
    del stock["spec"]["predictor"]["model"]
    assert validate.validate_document(stock, "isvc") == []


def test_unknown_kind_is_an_error_not_a_warning() -> None:
    doc = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert any("no schema" in p for p in validate.validate_document(doc, "w"))


def test_triton_probes_and_scrape_annotations_are_required() -> None:
    deployment = next(d for d in _docs("k8s/triton-deployment.yaml") if d["kind"] == "Deployment")
    assert validate.triton_pod_policy(deployment, "d") == []
    bad = copy.deepcopy(deployment)
    container = bad["spec"]["template"]["spec"]["containers"][0]
    container["livenessProbe"]["httpGet"]["path"] = "/healthz"
    del bad["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"]
    problems = "\n".join(validate.triton_pod_policy(bad, "d"))
    assert "/v2/health/live" in problems and "prometheus.io/scrape" in problems


def test_gpu_request_and_shared_memory() -> None:
    deployment = next(d for d in _docs("k8s/triton-deployment.yaml") if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    shm = next(v for v in pod["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"]["medium"] == "Memory"
    assert {"mountPath": "/dev/shm", "name": "dshm"} in pod["containers"][0]["volumeMounts"]


def test_headless_service_returns_every_pod() -> None:
    services = {d["metadata"]["name"]: d for d in _docs("k8s/triton-service.yaml")}
    assert services["triton-headless"]["spec"]["clusterIP"] == "None"
    deployment = next(d for d in _docs("k8s/triton-deployment.yaml") if d["kind"] == "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    for service in services.values():
        assert service["spec"]["selector"].items() <= labels.items()


def test_locust_workers_match_expected_workers() -> None:
    jobs = {d["metadata"]["name"]: d for d in _docs("k8s/locust-job.yaml") if d["kind"] == "Job"}
    args = jobs["locust-master"]["spec"]["template"]["spec"]["containers"][0]["args"]
    expected = int(args[args.index("--expect-workers") + 1])
    assert jobs["locust-worker"]["spec"]["parallelism"] == expected


def test_kustomization_with_missing_resource_is_caught(tmp_path: Path) -> None:
    kustomization = yaml.safe_load((ROOT / "docker" / "k8s" / "kustomization.yaml").read_text())
    kustomization["resources"].append("missing.yaml")
    path = tmp_path / "kustomization.yaml"
    path.write_text(yaml.safe_dump(kustomization))
    assert any("missing.yaml" in p for p in validate.check_manifest(path))


def _front() -> tuple[dict, dict]:
    deployment = next(d for d in _docs("k8s/http-deployment.yaml") if d["kind"] == "Deployment")
    return deployment, deployment["spec"]["template"]["spec"]["containers"][0]


def test_the_http_front_is_applied_with_the_stack() -> None:
    kustomization = yaml.safe_load((ROOT / "docker" / "k8s" / "kustomization.yaml").read_text())
    assert {"http-deployment.yaml", "http-service.yaml"} <= set(kustomization["resources"])


def test_the_http_front_binds_explicitly_with_its_token_from_a_secret() -> None:
    deployment, container = _front()
    assert validate.front_pod_policy(deployment, "d") == []
    assert container["image"].startswith("triton-stack-http:")
    assert "--host=0.0.0.0" in container["args"]
    env = {e["name"]: e for e in container["env"]}
    assert "value" not in env["TRITONSTACK_HTTP_TOKEN"]
    assert env["TRITONSTACK_HTTP_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "tritonstack-http-token"
    # Triton's token, from Triton's own Secret: /v1/ lists models through its restricted repository API.
    triton = next(d for d in _docs("k8s/triton-deployment.yaml") if d["kind"] == "Deployment")
    triton_env = {e["name"]: e for e in triton["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["TRITON_ACCESS_TOKEN"]["valueFrom"] == triton_env["TRITON_ACCESS_TOKEN"]["valueFrom"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["capabilities"]["drop"] == ["ALL"]
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_the_http_front_reaches_triton_and_its_repository() -> None:
    deployment, container = _front()
    host, port = validate._flag(container["args"], "--url").split(":")
    triton = {d["metadata"]["name"]: d for d in _docs("k8s/triton-service.yaml")}
    assert host in triton
    grpc = next(p for p in triton[host]["spec"]["ports"] if p["name"] == "grpc")
    assert int(port) == grpc["port"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    repository = mounts[validate._flag(container["args"], "--model-repository")]
    assert repository["readOnly"] is True
    volume = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == repository["name"])
    pvc = next(d for d in _docs("k8s/model-repository-pvc.yaml"))
    assert volume["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]


def test_the_http_front_service_selects_its_pods_and_port() -> None:
    deployment, container = _front()
    (service,) = _docs("k8s/http-service.yaml")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    names = {p["name"]: p["containerPort"] for p in container["ports"]}
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] in names and names[port["targetPort"]] == int(validate._flag(container["args"], "--port"))
    assert container["readinessProbe"]["httpGet"]["port"] in names


@pytest.mark.parametrize(("breakage", "words"), [
    (lambda c: c["args"].remove("--host=0.0.0.0"), "needs --host=0.0.0.0"),
    (lambda c: c["env"].__setitem__(0, {"name": "TRITONSTACK_HTTP_TOKEN", "value": "s3cret"}), "required Secret"),
    (lambda c: c["env"][0]["valueFrom"]["secretKeyRef"].__setitem__("optional", True), "required Secret"),
    (lambda c: c.__setitem__("livenessProbe", {"httpGet": {"path": "/health", "port": "http"}}),
     "livenessProbe must not be /health"),
    (lambda c: c["readinessProbe"]["httpGet"].__setitem__("path", "/v1/models"), "readinessProbe httpGet /health"),
])
def test_a_broken_http_front_is_caught(breakage, words) -> None:
    deployment, _ = _front()
    broken = copy.deepcopy(deployment)
    container = broken["spec"]["template"]["spec"]["containers"][0]
    assert container["env"][0]["name"] == "TRITONSTACK_HTTP_TOKEN"
    breakage(container)
    problems = "\n".join(validate.front_pod_policy(broken, "d"))
    assert words in problems
    assert validate.validate_document(broken, "d") == []  # the schema alone lets each through
