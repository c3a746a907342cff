"""The Modal deployment called from the library: the launcher started with the command line
docker/modal/app.py gives it (``ModalSettings.launcher_args``: every address bound, the access
token from the Secret), called over HTTP, the only protocol the deployment's web endpoint routes;
then over HTTPS through a TLS-terminating proxy, as Modal's edge serves it. No Modal account:
everything runs on this machine."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import signal
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from tests.client.standins import expected_embedding, write_embed
from tests.helpers import repos
from tritonstack.client import AsyncClient, Client, ClientError, Status, TlsConfig
from tritonstack.server import free_port

pytestmark = pytest.mark.triton
ROOT = Path(__file__).resolve().parents[2]
TOKEN = "modal-test-token"


def _app() -> ModuleType:
    """docker/modal/app.py, imported as Modal imports it (it needs the modal package, in dev)."""
    pytest.importorskip("modal", reason="docker/modal/app.py imports modal (pip install '.[dev]')")
    spec = importlib.util.spec_from_file_location("modal_triton_app_for_client", ROOT / "docker" / "modal" / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _set(args: list[str], flag: str, value: str) -> None:
    args[args.index(flag) + 1] = value


@pytest.fixture(scope="module")
def modal_container(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The Modal container's process on this machine; yields the web endpoint's port."""
    app = _app()
    repo = tmp_path_factory.mktemp("modal_repo")
    repos.write_add_one(repo)
    write_embed(repo)
    settings = app.ModalSettings(http_port=free_port(), grpc_port=free_port(), health_port=free_port())
    args = settings.launcher_args()
    assert args[:4] == ["python3", "-m", "tritonstack.server", "serve"] and "0.0.0.0" in args
    args[0] = sys.executable
    _set(args, "--model-repository", str(repo))  # the Volume's mount point, /models, in the container
    _set(args, "--metrics-port", str(free_port()))
    log = tmp_path_factory.mktemp("modal_log") / "launcher.log"
    with log.open("wb") as out:
        launcher = subprocess.Popen(args, cwd=ROOT, env={**os.environ, "TRITON_ACCESS_TOKEN": TOKEN},
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        try:
            app.wait_ready(f"http://127.0.0.1:{settings.health_port}", 180)  # what the container waits for
        except RuntimeError as exc:
            pytest.fail(f"{exc}:\n{log.read_text()[-3000:]}")
        yield settings.http_port
    finally:
        launcher.send_signal(signal.SIGTERM)  # as Modal stops a container
        try:
            launcher.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait(30)


def test_the_library_calls_the_deployments_web_endpoint_over_http(modal_container: int) -> None:
    url = f"http://127.0.0.1:{modal_container}"
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    with Client(urls=url, protocol="http", access_token=TOKEN) as triton:
        np.testing.assert_array_equal(triton.infer("add_one", {"INPUT": x})["OUTPUT"], x + 1)
        np.testing.assert_allclose(triton.embed(["hello"])[0], expected_embedding("hello"), rtol=1e-5)
        assert {m.name for m in triton.list_models()} == {"add_one", "embed"}  # the restricted API, with the token
        [replica] = triton.health()
        assert replica.ready
    with Client(urls=url, protocol="http") as anonymous, pytest.raises(ClientError) as info:
        anonymous.list_models()  # the Secret's token protects the model-repository API
    assert info.value.status is Status.PERMISSION_DENIED


class TlsProxy:
    """Modal's edge in miniature: TLS terminated here, the bytes passed on to Triton's HTTP port."""

    def __init__(self, target_port: int, cert: Path, key: Path) -> None:
        self._target = target_port
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(cert, key)
        self._loop = asyncio.new_event_loop()
        # The refused handshakes below are expected: not logged. (Formatting their tracebacks in
        # this thread parses source with ast while the main thread compiles: Python 3.11.7's
        # parser keeps its recursion depth in shared state, and pytest then died with
        # "SystemError: AST constructor recursion depth mismatch".)
        self._loop.set_exception_handler(lambda _loop, _context: None)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._relay, "127.0.0.1", 0, ssl=self._context))
        self.port = self._server.sockets[0].getsockname()[1]
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self._target)
        except OSError:
            writer.close()
            return

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, ssl.SSLError):
                pass
            finally:
                sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for the name triton.test (not the address the client dials)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl not found: cannot make the test certificate for the TLS proxy")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-keyout", str(key),
                    "-out", str(cert), "-subj", "/CN=triton.test", "-addext", "subjectAltName=DNS:triton.test"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def test_over_https_as_modals_edge_serves_it(modal_container: int, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    proxy = TlsProxy(modal_container, cert, key)
    url = f"https://127.0.0.1:{proxy.port}"
    tls = TlsConfig(root_certs=cert, server_name="triton.test")
    x = np.ones((3, 4), np.float32)
    try:
        with Client(urls=url, protocol="http", tls=tls) as triton:
            np.testing.assert_array_equal(triton.infer("add_one", {"INPUT": x})["OUTPUT"], x + 1)

        async def from_asyncio() -> np.ndarray:
            async with AsyncClient(urls=url, protocol="http", tls=tls) as triton:
                return await triton.embed(["hello", "world"])
        np.testing.assert_allclose(asyncio.run(from_asyncio())[1], expected_embedding("world"), rtol=1e-5)

        # the certificate names triton.test, not 127.0.0.1: refused, and not retried as a lost connection
        with Client(urls=url, protocol="http", tls=TlsConfig(root_certs=cert)) as wrong_name, \
                pytest.raises(ClientError) as info:
            wrong_name.server_ready()
        assert (info.value.status, info.value.attempts) == (Status.UNAUTHENTICATED, 1)

        async def wrong_name_from_asyncio() -> None:
            async with AsyncClient(urls=url, protocol="http", tls=TlsConfig(root_certs=cert)) as triton:
                await triton.server_ready()
        with pytest.raises(ClientError) as info:
            asyncio.run(wrong_name_from_asyncio())
        assert (info.value.status, info.value.attempts) == (Status.UNAUTHENTICATED, 1)
    finally:
        proxy.close()
