"""Triton on Modal: the NGC image, the model repository in a Modal Volume, one GPU per container.

    modal deploy docker/modal/app.py                         # needs a Modal account (modal token new)
    python docker/modal/app.py deploy --dry-run [--gpu L4]   # what would be deployed; no account
    python docker/modal/app.py upload model_repository       # the repository into the Volume
    python -m tritonstack.loadtest cost REPORT --platform modal --gpu L4 --target-rps 500   # containers and $

Settings come from ``MODAL_TRITON_*`` environment variables (``ModalSettings`` lists them) and
are validated before anything is built. The container runs the stack's launcher
(``python3 -m tritonstack.server serve``, the GPU image's entrypoint) on the Volume: it supervises
tritonserver, reloads a model whose backend stub died and turns on the latency summaries. The
container waits until the launcher reports ready (its truthful readiness on :8003), and only
then Modal routes traffic to it: Triton's HTTP / KServe v2 endpoint is the app's web endpoint.
``TRITON_ACCESS_TOKEN`` comes from the Modal Secret ``triton-access-token`` and protects the
model-repository API; nothing secret is here.

gRPC: Modal's web endpoints are HTTP/1.1 and HTTP/2 behind its proxy without gRPC routing;
``grpc_tunnel`` opens a raw TCP tunnel (``modal.forward``) to one container's port 8001, for
debugging and benchmarks. It is one container, not load-balanced, and goes away with it: not
for production traffic, which goes through the HTTP endpoint.

No second endpoint for the OpenAI/TEI HTTP front (tritonstack.http) here: it calls Triton over
gRPC, which Modal does not route between functions, and beside Triton in these containers it
cannot run, as NGC's Python is 3.10 and the http extra's Starlette needs 3.11. Run the front in
compose or Kubernetes (docs/deployment.md, "The HTTP front").
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import modal

# Modal imports this file again inside each container, from /root/app.py (an entrypoint file is
# mounted there), with no docker/ folder beside it: the images are built by then, and the files
# below are only named (lazily), not read, except the Dockerfile's tag (see ngc_image).
_HERE = Path(__file__).resolve()
ROOT = next((p for p in _HERE.parents[1:3] if (p / "docker" / "Dockerfile.gpu").is_file()), _HERE.parent)
GPUS = ("T4", "L4", "A10G", "L40S", "A100-40GB", "A100-80GB", "H100")


def ngc_image() -> str:
    """The tritonserver image docker/Dockerfile.gpu builds on: one tag for both targets ("" inside
    a Modal container, where the image is built already and the Dockerfile is not there)."""
    path = ROOT / "docker" / "Dockerfile.gpu"
    if not path.is_file() and not modal.is_local():
        return ""
    text = path.read_text()
    match = re.search(r"^ARG TRITON_IMAGE=(\S+)", text, re.M)
    if not match:
        raise ValueError("docker/Dockerfile.gpu has no `ARG TRITON_IMAGE=...` line")
    return match.group(1)


@dataclasses.dataclass(frozen=True)
class ModalSettings:
    """One Modal deployment, validated at the edge.

    The scaling figures come from measurements (README, docs/deployment.md "Modal"):
    * ``min_containers`` 1: a cold start pulls the ~10 GB NGC image and loads the repository;
      the launcher measured 4-5 s from start to ready for the demo repository on CPU, the pull
      is not measured here. One warm container keeps first requests off that path.
    * ``max_inputs`` 32 per container: by Little's law the measured capacity runs 4-7 requests in
      flight (classify_digit 1,100 rps at p50 6 ms, embed 375 rps at p50 10 ms, CPU); 32 leaves
      room for a GPU's larger batches while Triton's own queues bound the rest.
    * ``scaledown_window_s`` 300: scale-down waits 5 minutes of idle, far above the cold start.
    """

    app_name: str = "triton-serving-stack"
    gpu: str = "L4"
    image: str = dataclasses.field(default_factory=ngc_image)
    volume: str = "triton-model-repository"
    secret: str = "triton-access-token"
    min_containers: int = 1
    max_containers: int = 4
    max_inputs: int = 32
    scaledown_window_s: int = 300
    startup_timeout_s: int = 600
    timeout_s: int = 3600
    http_port: int = 8000
    grpc_port: int = 8001
    health_port: int = 8003

    def __post_init__(self) -> None:
        if self.gpu not in GPUS:
            raise ValueError(f"GPU {self.gpu!r} is not one Modal offers here; choose one of "
                             f"{', '.join(GPUS)}")
        if not 0 <= self.min_containers <= self.max_containers <= 100:
            raise ValueError(f"containers must satisfy 0 <= min ({self.min_containers}) <= max "
                             f"({self.max_containers}) <= 100")
        if not 1 <= self.max_inputs <= 1000:
            raise ValueError(f"max_inputs must be 1..1000, got {self.max_inputs}")
        for name in ("scaledown_window_s", "startup_timeout_s", "timeout_s"):
            if not 2 <= getattr(self, name) <= 86400:
                raise ValueError(f"{name} must be 2..86400 seconds, got {getattr(self, name)}")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: object) -> ModalSettings:
        """``MODAL_TRITON_<FIELD>`` variables (``MODAL_TRITON_GPU=H100``), then ``overrides``."""
        env = dict(os.environ if env is None else env)
        values: dict[str, object] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(f"MODAL_TRITON_{f.name.upper()}")
            if raw is not None:
                values[f.name] = int(raw) if f.type == "int" else raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    def launcher_args(self) -> list[str]:
        """The launcher's command line, as the GPU image's entrypoint runs it. It binds 0.0.0.0,
        so it restricts the model-repository API with ``TRITON_ACCESS_TOKEN`` (the Modal Secret),
        and refuses to start without one."""
        return ["python3", "-m", "tritonstack.server", "serve", "--host", "0.0.0.0",
                "--model-repository", "/models", "--http-port", str(self.http_port),
                "--grpc-port", str(self.grpc_port), "--metrics-port", "8002",
                "--health-port", str(self.health_port), "--exit-timeout", "30",
                "--ready-timeout", str(self.startup_timeout_s)]

    def describe(self) -> str:
        """What ``deploy`` would create, for ``--dry-run``."""
        return "\n".join([
            f"app         {self.app_name}",
            f"image       {self.image} + docker/requirements-gpu.txt + the launcher (tritonstack/server)",
            f"command     {' '.join(self.launcher_args())}",
            f"gpu         {self.gpu}, 1 per container",
            f"volume      {self.volume} mounted read-only at /models (fill it: upload MODEL_REPOSITORY)",
            f"secret      {self.secret} -> TRITON_ACCESS_TOKEN (protects the model-repository API)",
            f"endpoint    HTTPS web endpoint -> Triton HTTP/KServe v2 on :{self.http_port}, after the "
            f"launcher's /v2/health/ready on :{self.health_port}; gRPC only through the grpc_tunnel "
            "debug function",
            f"scaling     min {self.min_containers} warm, max {self.max_containers} containers, "
            f"{self.max_inputs} concurrent requests per container, scale down after "
            f"{self.scaledown_window_s} s idle",
            f"timeouts    startup {self.startup_timeout_s} s, container {self.timeout_s} s",
        ])


def function_options(settings: ModalSettings, volume: modal.Volume, secret: modal.Secret,
                     image: modal.Image) -> dict[str, object]:
    """The keyword arguments of ``App.function`` for the serving container (tests read them)."""
    return {
        "image": image, "gpu": settings.gpu, "volumes": {"/models": volume.read_only()},
        "secrets": [secret], "min_containers": settings.min_containers,
        "max_containers": settings.max_containers, "scaledown_window": settings.scaledown_window_s,
        "timeout": settings.timeout_s, "startup_timeout": settings.startup_timeout_s,
    }


def wait_ready(url: str, timeout_s: float) -> None:
    """Block until the launcher's readiness is 200 (raise after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the launcher was not ready after {timeout_s:.0f} s")


def _start_triton(settings: ModalSettings) -> None:
    # The launcher reads TRITON_ACCESS_TOKEN itself (never on this command line).
    subprocess.Popen(settings.launcher_args())  # noqa: S603 - the container's one server
    wait_ready(f"http://127.0.0.1:{settings.health_port}", settings.startup_timeout_s)


# Modal imports the functions of an app from module scope: the deployment is built here, once,
# from the validated settings (MODAL_TRITON_* variables).
try:
    SETTINGS: ModalSettings | None = ModalSettings.from_env()
    SETTINGS_ERROR = ""
except ValueError as _exc:
    SETTINGS, SETTINGS_ERROR = None, str(_exc)

if SETTINGS is not None:
    app = modal.App(SETTINGS.app_name)
    # What docker/Dockerfile.gpu adds to NVIDIA's image, and nothing else: the launcher and the
    # packages it and the versions' serving code import (the models carry their own code).
    image = (modal.Image.from_registry(SETTINGS.image)
             .pip_install_from_requirements(str(ROOT / "docker" / "requirements-gpu.txt"))
             .env({"PYTHONPATH": "/opt/stack", "PYTHONUNBUFFERED": "1"})
             .add_local_file(str(ROOT / "tritonstack" / "__init__.py"), "/opt/stack/tritonstack/__init__.py")
             .add_local_file(str(ROOT / "tritonstack" / "cli.py"), "/opt/stack/tritonstack/cli.py")
             .add_local_dir(str(ROOT / "tritonstack" / "server"), "/opt/stack/tritonstack/server"))
    volume = modal.Volume.from_name(SETTINGS.volume, create_if_missing=True)
    secret = modal.Secret.from_name(SETTINGS.secret)
    OPTIONS = function_options(SETTINGS, volume, secret, image)

    @app.function(**OPTIONS)
    @modal.concurrent(max_inputs=SETTINGS.max_inputs)
    @modal.web_server(SETTINGS.http_port, startup_timeout=SETTINGS.startup_timeout_s)
    def serve() -> None:
        """Triton's HTTP / KServe v2 endpoint, routed to once Triton is ready."""
        assert SETTINGS is not None
        _start_triton(SETTINGS)

    @app.function(**{**OPTIONS, "min_containers": 0})
    def grpc_tunnel(seconds: int = 600) -> None:
        """gRPC to ONE container through a TCP tunnel, for debugging and benchmarks only."""
        assert SETTINGS is not None
        _start_triton(SETTINGS)
        with modal.forward(SETTINGS.grpc_port, unencrypted=True) as tunnel:
            host, port = tunnel.tcp_socket
            print(f"gRPC at {host}:{port} for {seconds} s (one container, not load-balanced)")
            time.sleep(seconds)


def upload(settings: ModalSettings, repository: Path) -> None:
    """Put a model repository into the deployment's Volume (needs a Modal account)."""
    if not (repository.is_dir() and any((p / "config.pbtxt").is_file() for p in repository.iterdir())):
        raise ValueError(f"{repository} holds no model folder with a config.pbtxt; build it first "
                         "(make repository)")
    volume = modal.Volume.from_name(settings.volume, create_if_missing=True)
    with volume.batch_upload(force=True) as batch:
        batch.put_directory(str(repository), "/")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python docker/modal/app.py",
                                     description="Triton on Modal: dry-run a deployment, or upload a "
                                     "repository.",
                                     epilog="exit codes: 0 ok, 2 bad input, 3 no Modal account / network")
    sub = parser.add_subparsers(dest="command", required=True)
    deploy = sub.add_parser("deploy", help="print what `modal deploy docker/modal/app.py` creates")
    deploy.add_argument("--dry-run", action="store_true", required=True,
                        help="print the deployment; deploying itself is `modal deploy docker/modal/app.py`")
    deploy.add_argument("--gpu", help=f"one of {', '.join(GPUS)} (default: $MODAL_TRITON_GPU or L4)")
    up = sub.add_parser("upload", help="copy a model repository into the Volume")
    up.add_argument("repository", type=Path)
    args = parser.parse_args(argv)
    try:
        settings = ModalSettings.from_env(gpu=getattr(args, "gpu", None))
        if args.command == "deploy":
            print(settings.describe())
            return 0
        upload(settings, args.repository)
        print(f"uploaded {args.repository} to Modal Volume {settings.volume}")
        return 0
    except ValueError as exc:
        print(f"InvalidSettings: {exc}", file=sys.stderr)
        return 2
    except modal.exception.Error as exc:
        print(f"ModalError: {exc}; log in with `modal token new`", file=sys.stderr)
        return 3


if __name__ == "__main__":
    raise SystemExit(main())
