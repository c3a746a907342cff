"""The front's listening socket gives accepted connections TCP_NODELAY. Without it (a socket
made with proto 0, which asyncio does not recognise as TCP), each keep-alive response waited
40 ms for the caller's delayed ACK: 36 rps instead of hundreds (docs/benchmarks.md)."""

from __future__ import annotations

import asyncio
import socket

from tritonstack.http.cli import _listen


def test_accepted_connections_have_tcp_nodelay() -> None:
    async def accepted_nodelay() -> int:
        seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = writer.get_extra_info("socket")
            seen.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(on_connect, sock=_listen("127.0.0.1", 0))
        port = server.sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            return await asyncio.wait_for(seen, 10)
        finally:
            writer.close()
            server.close()
            await server.wait_closed()

    assert asyncio.run(accepted_nodelay()) != 0
