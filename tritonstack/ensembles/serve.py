"""``python -m tritonstack.ensembles serve FOLDER --name NAME``: one command from a Hugging Face folder
to a pipeline that a running Triton serves.

It does what three commands did, with the same functions, and checks the server first:

1. **Before any work**, against the server at ``--url``: every replica answers; the token lets
   this process use the repository API (``TRITON_ACCESS_TOKEN``, on a server started with
   ``--restrict model-repository``); Triton loads models on request (explicit model control,
   the launcher's default); it serves this ``--model-repository``; and none of the names the
   pipeline takes is served, or held by another kind of model in the repository.
2. ``converters export`` (:func:`converters.api.export`): parity against the source, the INT8
   gate, the portability and golden steps; a failed check writes nothing.
3. ``ensembles add`` (:func:`ensembles.add.add`): the tokenizer step, a classifier's labels
   step, and the ensemble ``NAME``.
4. Loads through the repository API (:meth:`client.Client.load_model`, on every replica): the
   model (its golden self-check runs at load on the serving CPU), its steps, then the ensemble;
   waits until ``NAME`` is ready and answers a first request through the client.

Errors are the converters' (``.exit_code``), plus, from the server's side::

    ServerUnavailable (3)   no Triton answers, it will not load on request, or the token is missing
    NameServed (2)          a name the pipeline takes is served already
    LoadFailed (1)          Triton refused a model, or the pipeline failed its first request
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import time
from collections.abc import Callable
from pathlib import Path

from tritonstack.client import Client, ClientConfig, ClientError, ModelState, Status
from tritonstack.converters.api import ExportReport, ExportSpec, export
from tritonstack.converters.errors import CheckFailed, EnvironmentProblem, InvalidSpec, UsageError
from tritonstack.converters.sources.hf import hf_source
from tritonstack.ensembles.add import AddReport, AddSpec, add, check_names_free, fast_tokenizer
from tritonstack.ensembles.pipelines import step_names

__all__ = ["LoadFailed", "NameServed", "ServeReport", "ServeSpec", "ServerUnavailable", "serve"]

#: What each pipeline task is exported as (a cross-encoder is a one-logit classifier).
EXPORT_TASK = {"feature-extraction": "feature-extraction", "text-classification": "text-classification",
               "rerank": "text-classification"}
DEFAULT_HTTP_FRONT = "127.0.0.1:8080"  # tritonstack.http's own default --host and --port
EXAMPLE_TEXT = "How do I reset my password?"
EXAMPLE_PASSAGES = ("Reset it from the sign-in page.", "Your parcel ships on Monday.")
# A model Triton is loading or serving; "" and UNAVAILABLE are in the repository, not served.
_SERVED_STATES = {"READY", "LOADING", "UNLOADING"}


class ServerUnavailable(EnvironmentProblem):
    """No Triton answers at the address, it will not load models on request, or it refuses us."""


class NameServed(UsageError):
    """A name the pipeline would take is served already."""


class LoadFailed(CheckFailed):
    """Triton refused to load a model, or the loaded pipeline failed its first request."""


@dataclasses.dataclass(frozen=True)
class ServeSpec:
    """``python -m tritonstack.ensembles serve`` as data, validated on construction.

    Args:
        name: the pipeline callers use (the ensemble).
        export: what to export: ``source`` is the folder, ``name`` the exported model's name
            (``NAME_model`` from the CLI), ``repository`` the one the server serves.
        task: ``feature-extraction``, ``text-classification`` or ``rerank``; None: the folder's
            (a one-logit classifier is a reranker).
        urls: the server's gRPC replicas; empty: ``TRITON_GRPC_URLS``, else 127.0.0.1:8001.
        max_length: truncate texts at this many tokens (None: the model's own maximum).
        timeout_s: how long loading may take, per model and replica.
        http_front: where the HTTP front listens, for the printed calls.
    """

    name: str
    export: ExportSpec
    task: str | None = None
    urls: tuple[str, ...] = ()
    max_length: int | None = None
    timeout_s: float = 300.0
    http_front: str = DEFAULT_HTTP_FRONT

    def __post_init__(self) -> None:
        self.add_spec()  # checks NAME, the task and --max-length as `add` does
        folder = Path(self.export.source)
        if not folder.is_dir():
            raise InvalidSpec(f"FOLDER {folder} is not a folder; pass a Hugging Face model folder "
                              "(config.json, weights and tokenizer files, as save_pretrained writes them)")
        if self.task is not None:
            wanted = EXPORT_TASK[self.task]
            if self.export.task not in (None, wanted):
                raise InvalidSpec(f"--task {self.task} is exported as {wanted}, not {self.export.task}")
            object.__setattr__(self, "export", dataclasses.replace(self.export, task=wanted))
        host, _, port = self.http_front.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise InvalidSpec(f"--http-front {self.http_front!r} is not HOST:PORT (e.g. {DEFAULT_HTTP_FRONT})")
        object.__setattr__(self, "urls", tuple(self.urls))

    def add_spec(self) -> AddSpec:
        return AddSpec(self.name, self.export.name, self.export.repository, self.task,
                       Path(self.export.source), self.max_length)

    def names(self) -> list[str]:
        """Every model name the pipeline takes: the ensemble, the exports, the Python steps."""
        exports = [self.export.model_name(p) for p in self.export.precisions]
        return [self.name, *exports, *step_names(self.export.name)]


@dataclasses.dataclass(frozen=True)
class ServeReport:
    """What :func:`serve` did: the export, the pipeline it added, and what is loaded where."""

    spec: ServeSpec
    exported: ExportReport
    added: AddReport
    loaded: tuple[str, ...]
    urls: tuple[str, ...]
    seconds: float

    @property
    def task(self) -> str:
        return self.added.task

    def calls(self) -> dict[str, str]:
        """The calls that reach the pipeline: gRPC through the client (Python and shell), and HTTP
        through the front (the command that starts it, curl, and OpenAI's SDK for embedders)."""
        return calls(self.spec.name, self.task, self.urls, self.spec.export.repository, self.spec.http_front)

    def to_dict(self) -> dict[str, object]:
        model = self.exported.models[0]
        return {
            "name": self.spec.name, "task": self.task, "folder": str(self.spec.export.source),
            "repository": str(self.spec.export.repository), "urls": list(self.urls),
            "model": {"name": model.name, "version": model.version, "precision": model.precision},
            "exported": [{"name": m.name, "version": m.version, "precision": m.precision, "path": str(m.path)}
                         for m in self.exported.models],
            "steps": list(self.added.written[:-1]), "loaded": list(self.loaded),
            "max_length": self.added.model.max_length, "max_batch_size": self.added.model.max_batch_size,
            "parity": self.exported.parity, "accuracy": self.exported.accuracy,
            "thresholds_lowered": self.exported.thresholds_lowered,
            "seconds": round(self.seconds, 2), "calls": self.calls(),
        }


def serve(spec: ServeSpec, progress: Callable[[str], None] | None = None) -> ServeReport:
    """Export ``spec.export.source``, add the pipeline ``spec.name`` and load it on a running Triton.

    Raises:
        ServerUnavailable (exit 3), NameServed / InvalidSpec / UnsupportedModel (exit 2) before
        anything is written; the export's own errors (a failed check: exit 1, nothing written);
        LoadFailed (exit 1): Triton refused a model, or the pipeline failed its first request.
    """
    say = progress or (lambda _line: None)
    start = time.monotonic()
    # a bad folder, or one whose tokenizer `add` could not serve, is refused before the server is asked
    hf_source(Path(spec.export.source), spec.export.task)
    fast_tokenizer(Path(spec.export.source))
    try:
        config = ClientConfig.from_env(**({"urls": spec.urls} if spec.urls else {}), timeout_s=10.0, retries=1)
    except ClientError as exc:
        raise InvalidSpec(f"{exc.message}; pass --url HOST:PORT") from None
    urls = config.urls
    with Client(config) as client:
        try:
            _preflight(spec, client, urls)
            say(f"Triton at {', '.join(urls)} loads on request and serves {spec.export.repository}; "
                f"exporting {spec.export.source}")
            exported = export(spec.export, progress=say)
            added = add(spec.add_spec())
            say(f"added {added.ensemble} ({added.task}): {', '.join(added.written)}")
            loaded = _load(spec, client, urls, [exported.models[0].name, *added.written], say)
            _first_request(spec, client, added.task, urls)
        except ClientError as exc:  # the server went away, or refused us, between the steps
            raise _server_refused(exc, urls) from None
    return ServeReport(spec, exported, added, tuple(loaded), urls, time.monotonic() - start)


def _preflight(spec: ServeSpec, client: Client, urls: tuple[str, ...]) -> None:
    """Refuse, before any export, what would make the served pipeline impossible."""
    repository = Path(spec.export.repository)
    down = [r for r in client.health(timeout_s=5.0) if not (r.live and r.ready)]
    if down:
        reason = f" ({down[0].error.splitlines()[0]})" if down[0].error else " (not ready)"
        raise ServerUnavailable(
            f"no Triton answers at {down[0].url}{reason}; start one on this repository "
            f"(python -m tritonstack.server serve --model-repository {repository}) or pass --url HOST:PORT")
    try:
        index = client.list_models(timeout_s=10.0)
        client.unload_model(f"{spec.name}-serve-probe", timeout_s=10.0)  # no such model: a no-op if allowed
    except ClientError as exc:
        raise _server_refused(exc, urls) from None
    _check_same_repository(index, repository, urls)
    served = [m.name for m in index if m.name in spec.names() and m.state in _SERVED_STATES]
    if served:
        unload = "; ".join(f"python -m tritonstack.client unload {n}" for n in dict.fromkeys(served))
        raise NameServed(f"{', '.join(dict.fromkeys(served))} already served at {', '.join(urls)}; choose "
                         f"another --name (or --model), or unload first ({unload})")
    exports = [spec.export.model_name(p) for p in spec.export.precisions]
    check_names_free(repository, spec.name, step_names(spec.export.name), exports)


def _server_refused(exc: ClientError, urls: tuple[str, ...]) -> ServerUnavailable:
    where = ", ".join(urls)
    if exc.status in (Status.PERMISSION_DENIED, Status.UNAUTHENTICATED):
        return ServerUnavailable(f"Triton at {where} restricts its repository API and refused this "
                                 "process's token; set TRITON_ACCESS_TOKEN to the token the server was "
                                 "started with (--restrict model-repository)")
    reason = (exc.server_message or str(exc)).splitlines()[0]
    if "not allowed" in reason:
        return ServerUnavailable(f"Triton at {where} does not load models on request ({reason}); restart it "
                                 "with --model-control explicit (python -m tritonstack.server serve's default)")
    return ServerUnavailable(f"Triton at {where} did not answer its repository API ({reason}); check that it "
                             "runs (python -m tritonstack.client health)")


def _check_same_repository(index: list[ModelState], repository: Path, urls: tuple[str, ...]) -> None:
    """Triton lists every folder of the repository it serves: one it lists that ``repository``
    lacks means it serves another (hidden staging folders come and go, so they are left out)."""
    local = {p.name for p in repository.iterdir() if p.is_dir()} if repository.is_dir() else set()
    foreign = sorted({m.name for m in index if not m.name.startswith(".")} - local)
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise InvalidSpec(f"Triton at {', '.join(urls)} serves another repository than {repository} (it "
                          f"lists {shown}, which {repository} lacks); pass the --model-repository it serves")


def _load(spec: ServeSpec, client: Client, urls: tuple[str, ...], names: list[str],
          say: Callable[[str], None]) -> list[str]:
    """Load the model, its steps and then the ensemble, so a refusal names the model refused."""
    index = {m.name for m in client.list_models(timeout_s=10.0)}
    if spec.name not in index:
        raise InvalidSpec(f"Triton at {', '.join(urls)} does not see {spec.name} in its repository: it "
                          f"serves another folder than {spec.export.repository}; pass the --model-repository it serves")
    for name in names:
        try:
            client.load_model(name, timeout_s=spec.timeout_s)
        except ClientError as exc:
            reason = (exc.server_message or str(exc)).splitlines()[0]
            if exc.status is Status.UNAVAILABLE:
                raise ServerUnavailable(f"Triton at {', '.join(urls)} stopped answering while loading {name} "
                                        f"({reason}); start it again and rerun") from None
            if exc.status is Status.DEADLINE_EXCEEDED:
                raise LoadFailed(f"{name} did not load within --timeout {spec.timeout_s:g}s; rerun with a "
                                 "longer --timeout") from None
            raise LoadFailed(f"Triton refused to load {name} ({reason}); {spec.name} is not served (its "
                             f"files stay in {spec.export.repository})") from None
        say(f"  loaded {name}")
    deadline = time.monotonic() + spec.timeout_s
    while not client.model_ready(spec.name, timeout_s=10.0):
        if time.monotonic() > deadline:
            raise LoadFailed(f"{spec.name} loaded but is not ready after {spec.timeout_s:g}s")
        time.sleep(0.2)
    return names


def _first_request(spec: ServeSpec, client: Client, task: str, urls: tuple[str, ...]) -> None:
    try:
        if task == "feature-extraction":
            client.embed([EXAMPLE_TEXT], model=spec.name, timeout_s=60.0)
        elif task == "rerank":
            client.rerank(EXAMPLE_TEXT, list(EXAMPLE_PASSAGES), model=spec.name, timeout_s=60.0)
        else:
            client.classify_texts([EXAMPLE_TEXT], model=spec.name, timeout_s=60.0)
    except ClientError as exc:
        raise LoadFailed(f"{spec.name} is loaded on {', '.join(urls)} but failed its first request "
                         f"({exc}); unload it (python -m tritonstack.client unload {spec.name})") from None


def calls(name: str, task: str, urls: tuple[str, ...], repository: Path, http_front: str) -> dict[str, str]:
    """The ways to call pipeline ``name``, as a user copies them.

    Keys: ``python`` (gRPC through ``tritonstack.client``), ``cli`` (the same from the shell),
    ``http_front`` (the command that starts the HTTP front for this pipeline), ``curl`` (its
    route: OpenAI's ``/v1/embeddings``, TEI's ``/predict`` or ``/rerank``), and for embedders
    ``openai`` (OpenAI's Python SDK through the front).
    """
    host, _, port = http_front.rpartition(":")
    base = f"http://{http_front}"
    grpc = ", ".join(json.dumps(u) for u in urls)
    url_flags = " ".join(f"--url {u}" for u in urls)
    text = json.dumps(EXAMPLE_TEXT)
    front_flag = {"feature-extraction": "--embed-model", "text-classification": "--classify-model",
                  "rerank": "--rerank-model"}[task]
    front = (f"python -m tritonstack.http serve {url_flags} --model-repository {shlex.quote(str(repository))} "
             f"{front_flag} {name}" + (f" --host {host}" if host != "127.0.0.1" else "")
             + (f" --port {port}" if port != "8080" else ""))
    if task == "feature-extraction":
        call, cli = (f"vectors = triton.embed([{text}], model={json.dumps(name)})",
                     f"embed --model {name} {shlex.quote(EXAMPLE_TEXT)}")
        route, body = "/v1/embeddings", {"model": name, "input": [EXAMPLE_TEXT]}
    elif task == "rerank":
        passages = ", ".join(json.dumps(p) for p in EXAMPLE_PASSAGES)
        call = f"scores = triton.rerank({text}, [{passages}], model={json.dumps(name)})"
        cli = f"rerank --model {name} {' '.join(shlex.quote(t) for t in (EXAMPLE_TEXT, *EXAMPLE_PASSAGES))}"
        route, body = "/rerank", {"query": EXAMPLE_TEXT, "texts": list(EXAMPLE_PASSAGES)}
    else:
        call, cli = (f"labels, probabilities = triton.classify_texts([{text}], model={json.dumps(name)})",
                     f"classify --model {name} {shlex.quote(EXAMPLE_TEXT)}")
        route, body = "/predict", {"inputs": EXAMPLE_TEXT}
    out = {
        "python": f"from tritonstack.client import Client\n\ntriton = Client(urls=[{grpc}])\n{call}",
        "cli": f"python -m tritonstack.client {url_flags} {cli}",
        "http_front": front,
        "curl": (f"curl -s {base}{route} -H 'Content-Type: application/json' "
                 f"-d {shlex.quote(json.dumps(body))}"),
    }
    if task == "feature-extraction":
        out["openai"] = ("import os\n\nfrom openai import OpenAI\n\n"
                         f"client = OpenAI(base_url=\"{base}/v1\", "
                         "api_key=os.environ.get(\"TRITONSTACK_HTTP_TOKEN\", \"-\"))\n"
                         f"vectors = client.embeddings.create(model={json.dumps(name)}, input=[{text}])")
    return out
