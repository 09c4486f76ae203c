"""The bench's HTTP/1.1 client: keep-alive connections over asyncio streams, one write per
request, JSON bodies through orjson.

The load generator shares the machine's two cores with what it measures. httpx cost 3-3.5 ms
of CPU per order POST here (tests/bench/cpu_split.py), as much as the web process's own work,
and the CPU it took was taken from the server: a web process answering httpx used ~7 ms per
order POST against ~5 ms answering wrk's identical requests. This client costs a fraction of
that, so the figures describe the server. It speaks plain HTTP/1.1 as any client does: the
same requests, headers and bodies, one keep-alive connection per trader (or `connections`).

    async with Client("http://127.0.0.1:8000", headers={"Authorization": "Token ..."}) as c:
        response = await c.post("/api/v1/orders/", json=body)
        response.status_code, response.json(), response.headers["retry-after"]
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson


class HTTPError(Exception):
    """The request got no complete answer (connection refused or dropped, a malformed
    answer, the timeout)."""


class ConnectError(HTTPError):
    pass


class RemoteProtocolError(HTTPError):
    pass


class TimeoutException(HTTPError):
    pass


class Headers(dict):
    """Response headers by lower-case name (a repeated header keeps its last value)."""

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())


class Response:
    __slots__ = ("status_code", "headers", "content")

    def __init__(self, status_code: int, headers: Headers, content: bytes) -> None:
        self.status_code = status_code
        self.headers = headers
        self.content = content

    def json(self) -> Any:
        return orjson.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


class _Connection:
    __slots__ = ("reader", "writer", "used")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.used = False  # has it answered a request (a kept connection the server may close)

    def close(self) -> None:
        self.writer.close()


class Client:
    """At most `connections` requests in flight, each on a connection of its own; connections
    are kept open between requests. A request on a kept connection that the server closed
    meanwhile (its keep-alive ran out) is sent once more on a new one, as long as no byte of
    an answer came back, as browsers and httpx do."""

    def __init__(
        self,
        base_url: str,
        *,
        headers: dict[str, str] | None = None,
        connections: int = 1,
        timeout: float = 60.0,
    ) -> None:
        url = urlsplit(base_url)
        if url.scheme != "http":
            raise ValueError(f"only http:// URLs: {base_url}")
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or 80
        self.timeout = timeout
        fixed = {
            "Host": url.netloc,
            "Accept": "*/*",
            "User-Agent": "fillmore-bench",
            **(headers or {}),
        }
        self._fixed = "".join(f"{k}: {v}\r\n" for k, v in fixed.items()).encode("latin-1")
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(connections)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    async def get(self, path: str, params: dict[str, Any] | None = None) -> Response:
        return await self.request("GET", path, params=params)

    async def post(self, path: str, json: Any = None) -> Response:
        return await self.request("POST", path, json=json)

    async def request(
        self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None
    ) -> Response:
        if params:
            path = f"{path}?{urlencode(params)}"
        head = f"{method} {path} HTTP/1.1\r\n".encode("latin-1") + self._fixed
        if json is not None:
            body = orjson.dumps(json)
            head += b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
        else:
            body = b""
        message = head + b"\r\n" + body
        async with self._slots:
            try:
                async with asyncio.timeout(self.timeout):
                    return await self._exchange(message, method)
            except TimeoutError as exc:
                raise TimeoutException(f"no answer within {self.timeout} s") from exc

    async def _exchange(self, message: bytes, method: str) -> Response:
        while True:
            connection = self._idle.pop() if self._idle else await self._connect()
            try:
                connection.writer.write(message)
                response, keep = await _read_response(connection.reader, method)
            except _ClosedBeforeAnswer as exc:
                connection.close()
                if connection.used:
                    continue  # a kept connection the server had closed: once more on a new one
                raise RemoteProtocolError(
                    "the server closed the connection without answering"
                ) from exc
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                connection.close()
                raise RemoteProtocolError(f"{type(exc).__name__}: {exc}") from exc
            except BaseException:  # cancelled or timed out mid-answer: the connection is unusable
                connection.close()
                raise
            if keep:
                connection.used = True
                self._idle.append(connection)
            else:
                connection.close()
            return response

    async def _connect(self) -> _Connection:
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port, limit=2**20)
        except OSError as exc:
            raise ConnectError(f"{self.host}:{self.port}: {exc}") from exc
        return _Connection(reader, writer)


class _ClosedBeforeAnswer(Exception):
    pass


async def _read_response(reader: asyncio.StreamReader, method: str) -> tuple[Response, bool]:
    """One answer: (the response, whether the connection may carry another request)."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise _ClosedBeforeAnswer from exc
        raise
    except ConnectionResetError as exc:
        raise _ClosedBeforeAnswer from exc
    lines = head[:-4].decode("latin-1").split("\r\n")
    version, status, *_ = lines[0].split(" ", 2)
    headers = Headers()
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    code = int(status)
    keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
    if method == "HEAD" or code in (204, 304) or 100 <= code < 200:
        return Response(code, headers, b""), keep
    if "content-length" in headers:
        content = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        content = await _read_chunked(reader)
    else:  # the body runs to the end of the connection
        content = await reader.read()
        keep = False
    return Response(code, headers, content), keep


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers, then the blank line
                pass
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
