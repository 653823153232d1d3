"""A small HTTP/1.1 client for load benchmarks on loopback: one kept-alive connection per
simulated user, requests written and answers parsed by hand on asyncio streams.

The benchmark's client shares the machine's cores with the server and the database; httpx's
``AsyncClient`` spends ~1.5–2 ms of CPU per request (pool, headers, URL and cookie
machinery), a third of a core at 300 requests/s. This one spends a fraction of that and
does the same on the wire: a real request, the whole answer read (``Content-Length`` or
chunked), the status checked by the caller. Plain ``http://`` to one host only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json as jsonlib
from dataclasses import dataclass
from typing import Any


class TransportError(Exception):
    """The connection failed or the answer was not HTTP/1.1."""


@dataclass
class Answer:
    """An HTTP answer: status, headers (names in lower case), body."""

    status_code: int
    headers: dict[str, str]
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return jsonlib.loads(self.content)


class Connection:
    """One kept-alive connection to ``host:port`` (opened on first use, reopened after the
    server closed it)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        """Send one request and read its whole answer; a GET on a kept-alive connection
        the server had closed is sent again once on a new one (as browsers do)."""
        body = b"" if json is None else jsonlib.dumps(json, ensure_ascii=False).encode()
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        if json is not None:
            lines.append("Content-Type: application/json")
        if body or method not in ("GET", "HEAD"):
            lines.append(f"Content-Length: {len(body)}")
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        reused = self._writer is not None
        try:
            return await self._exchange(raw)
        except TransportError:
            if not (reused and method == "GET"):
                raise
            return await self._exchange(raw)

    async def _exchange(self, raw: bytes) -> Answer:
        try:
            if self._writer is None:
                self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
            assert self._reader is not None
            self._writer.write(raw)
            await self._writer.drain()
            head = await self._reader.readuntil(b"\r\n\r\n")
            status_line, *header_lines = head.decode("latin-1").split("\r\n")
            parts = status_line.split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
                raise TransportError(f"not an HTTP/1.1 answer: {status_line[:60]!r}")
            headers: dict[str, str] = {}
            for line in header_lines:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            if "content-length" in headers:
                content = await self._reader.readexactly(int(headers["content-length"]))
            elif headers.get("transfer-encoding", "").lower() == "chunked":
                content = await self._chunked()
            else:
                content = b""
            if headers.get("connection", "").lower() == "close":
                await self.close()
            return Answer(int(parts[1]), headers, content)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            await self.close()
            raise TransportError(type(exc).__name__) from exc

    async def _chunked(self) -> bytes:
        assert self._reader is not None
        out = bytearray()
        while True:
            size = int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self._reader.readuntil(b"\r\n")
                return bytes(out)
            out += await self._reader.readexactly(size)
            await self._reader.readexactly(2)

    async def close(self) -> None:
        """Close the connection (the next request opens a new one)."""
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
