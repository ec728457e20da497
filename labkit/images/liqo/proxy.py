#!/usr/bin/python3
"""Stand-in for Liqo's proxy (upstream: Envoy v1.29.2, which cannot be built here).

The same job as the chart's Envoy configuration: accept HTTP ``CONNECT`` requests on port 8118
and tunnel each to the cluster's API server (``kubernetes.default:443``, here the in-cluster
``KUBERNETES_SERVICE_HOST``/``PORT``); anything else gets ``405``. Liqo uses it only for
in-band peering; the kit peers out of band, so it mostly idles. Standard library only: it runs
on the image's ``/usr/bin/python3``.
"""

from __future__ import annotations

import asyncio
import os
import sys

#: ``proxy.config.listeningPort`` of the chart.
PORT = 8118


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upstream: tuple[str, int]) -> None:
    """Serve one client: a ``CONNECT`` becomes a byte tunnel to ``upstream``."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=30)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, ConnectionError):
        writer.close()
        return
    method = head.split(b" ", 1)[0]
    if method != b"CONNECT":
        writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()
        return
    try:
        up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(*upstream), timeout=1.25)
    except (OSError, asyncio.TimeoutError):
        writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()
        return
    writer.write(b"HTTP/1.1 200 OK\r\n\r\n")
    await writer.drain()
    await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def serve(port: int, upstream: tuple[str, int], ready: asyncio.Event | None = None) -> None:
    """Listen on ``port`` (all addresses) until cancelled."""
    server = await asyncio.start_server(lambda r, w: handle(r, w, upstream), "0.0.0.0", port)
    if ready is not None:
        ready.set()
    async with server:
        await server.serve_forever()


def main() -> None:
    """Entry point: the API server from the in-cluster environment, port :data:`PORT`."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST", "kubernetes.default")
    port = int(os.environ.get("KUBERNETES_SERVICE_PORT", "443"))
    print(f"labkit stand-in for Liqo's proxy: CONNECT on :{PORT} -> {host}:{port}", file=sys.stderr, flush=True)
    asyncio.run(serve(PORT, (host, port)))


if __name__ == "__main__":
    main()
