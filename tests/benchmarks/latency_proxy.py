"""A TCP proxy that holds every chunk a client sends for a fixed time before passing it on: a local S3 server
(moto) behind it answers each request a round trip later, as a remote object store does.

    python tests/benchmarks/latency_proxy.py UPSTREAM_PORT DELAY_MS [COUNTS_FILE]  # prints the port it listens on

Answers flow back at once; an HTTP request (its headers, or a small body) is one chunk, so each request waits
``DELAY_MS`` once. With ``COUNTS_FILE``, the requests passed so far by method (``{"GET": n, "HEAD": m}``) are
kept there. Used by ``bench_corpus_load.py --store s3``.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
import time

_REQUEST_LINE = re.compile(rb"^(GET|HEAD|PUT|POST|DELETE) \S+ HTTP/1\.[01]\r$", re.MULTILINE)


class _Counts:
    def __init__(self, path: str | None):
        self.path, self.by_method = path, {}

    def add(self, chunk: bytes) -> None:
        if self.path is None:
            return
        for method in _REQUEST_LINE.findall(chunk):
            self.by_method[method.decode()] = self.by_method.get(method.decode(), 0) + 1
        with open(self.path, "w") as f:
            json.dump(self.by_method, f)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay_s: float,
                counts: _Counts | None = None) -> None:
    try:
        while chunk := await reader.read(1 << 16):
            if counts is not None:
                counts.add(chunk)
            if delay_s:
                await asyncio.sleep(delay_s)
            writer.write(chunk)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def _serve(upstream_port: int, delay_s: float, counts: _Counts) -> None:
    async def connect(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", upstream_port)
        await asyncio.gather(_pipe(client_r, server_w, delay_s, counts), _pipe(server_r, client_w, 0.0))

    server = await asyncio.start_server(connect, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


def start(upstream_url: str, delay_ms: float, counts_file: str | None = None) -> tuple[subprocess.Popen, str]:
    """The proxy in a process of its own in front of ``upstream_url`` (``http://127.0.0.1:PORT``); returns the
    process and the URL to use instead."""
    port = int(upstream_url.rsplit(":", 1)[1])
    proc = subprocess.Popen([sys.executable, __file__, str(port), str(delay_ms)] + ([counts_file] if counts_file
                                                                                    else []),
                            stdout=subprocess.PIPE, text=True)
    listening = int(proc.stdout.readline())
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", listening), timeout=1):
                return proc, f"http://127.0.0.1:{listening}"
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("the latency proxy did not start") from None
            time.sleep(0.1)


if __name__ == "__main__":
    asyncio.run(_serve(int(sys.argv[1]), float(sys.argv[2]) / 1000, _Counts(sys.argv[3] if len(sys.argv) > 3
                                                                          else None)))
