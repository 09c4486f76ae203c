"""The bench's HTTP client (tests/bench/http.py) against a local server written for each case:
the figures of `make bench` are only as good as its client's reading of the answers."""

import asyncio

import orjson
import pytest

from tests.bench import http


async def _serve(handle):
    """A server on a free port running `handle(reader, writer)` per connection; answers
    (server, base_url, requests) where requests collects each request's (head, body)."""
    requests: list[tuple[str, bytes]] = []

    async def on_connection(reader, writer):
        try:
            await handle(reader, writer, requests)
        finally:
            writer.close()

    server = await asyncio.start_server(on_connection, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}", requests


async def _read_request(reader, requests):
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    length = 0
    for line in head.split("\r\n"):
        if line.lower().startswith("content-length:"):
            length = int(line.split(":", 1)[1])
    body = await reader.readexactly(length) if length else b""
    requests.append((head, body))
    return head, body


def _answer(status: int, body: bytes, *extra: str) -> bytes:
    lines = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def run(coroutine):
    return asyncio.run(coroutine)


def test_keep_alive_json_post_and_get_with_params():
    async def handle(reader, writer, requests):
        while True:
            try:
                head, body = await _read_request(reader, requests)
            except asyncio.IncompleteReadError:
                return
            payload = orjson.dumps(
                {"echo": orjson.loads(body) if body else None, "n": len(requests)}
            )
            writer.write(_answer(201, payload, "Retry-After: 3"))

    async def main():
        server, url, requests = await _serve(handle)
        async with server, http.Client(url, headers={"Authorization": "Token abc"}) as client:
            first = await client.post("/api/v1/orders/", json={"quantity": "1000"})
            second = await client.get("/api/v1/orders/x/events/", params={"page_size": 100})
        return first, second, requests

    first, second, requests = run(main())
    assert first.status_code == 201
    assert first.json() == {"echo": {"quantity": "1000"}, "n": 1}
    assert first.headers["Retry-After"] == "3" and first.headers.get("retry-after") == "3"
    assert second.json()["n"] == 2  # the same connection answered both
    post_head, post_body = requests[0]
    assert post_head.startswith("POST /api/v1/orders/ HTTP/1.1\r\n")
    assert "Authorization: Token abc\r\n" in post_head
    assert "Content-Type: application/json\r\n" in post_head
    assert orjson.loads(post_body) == {"quantity": "1000"}
    assert requests[1][0].startswith("GET /api/v1/orders/x/events/?page_size=100 HTTP/1.1\r\n")


def test_chunked_and_close_delimited_bodies():
    async def handle(reader, writer, requests):
        head, _ = await _read_request(reader, requests)
        if "/chunked" in head:
            writer.write(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                b'4\r\n{"a"\r\n3;x=y\r\n: 1\r\n1\r\n}\r\n0\r\n\r\n'
            )
        else:
            writer.write(b'HTTP/1.0 200 OK\r\n\r\n{"b": 2}')
        await writer.drain()

    async def main():
        server, url, _ = await _serve(handle)
        async with server, http.Client(url) as client:
            return (await client.get("/chunked")).json(), (await client.get("/eof")).json()

    assert run(main()) == ({"a": 1}, {"b": 2})


def test_a_kept_connection_the_server_closed_is_replaced_once():
    """The server answers one request per connection without saying so (as when keep-alive
    runs out between two requests): the next request goes again on a new connection."""
    connections = []

    async def handle(reader, writer, requests):
        connections.append(writer)
        await _read_request(reader, requests)
        writer.write(_answer(200, b"{}"))
        await writer.drain()

    async def main():
        server, url, requests = await _serve(handle)
        async with server, http.Client(url) as client:
            statuses = [(await client.post("/o", json={"i": i})).status_code for i in range(3)]
        return statuses, requests

    statuses, requests = run(main())
    assert statuses == [200, 200, 200]
    assert [orjson.loads(body)["i"] for _, body in requests] == [0, 1, 2]  # each sent once
    assert len(connections) == 3


def test_a_new_connection_closed_without_an_answer_is_an_error_not_a_retry():
    async def handle(reader, writer, requests):
        await _read_request(reader, requests)  # and close without answering

    async def main():
        server, url, requests = await _serve(handle)
        async with server, http.Client(url) as client:
            with pytest.raises(http.RemoteProtocolError):
                await client.post("/o", json={})
        return requests

    assert len(run(main())) == 1  # a POST the server may have acted on is not sent twice


def test_refused_connection_and_timeout():
    async def silent(reader, writer, requests):
        await _read_request(reader, requests)
        await asyncio.sleep(5)

    async def main():
        server, url, _ = await _serve(silent)
        async with server:
            async with http.Client(url, timeout=0.2) as client:
                with pytest.raises(http.TimeoutException):
                    await client.get("/slow")
        closed_port = url  # the server is closed now: nothing listens there
        async with http.Client(closed_port) as client:
            with pytest.raises(http.ConnectError):
                await client.get("/")

    run(main())


def test_connections_bound_the_requests_in_flight():
    in_flight = 0
    most = 0

    async def handle(reader, writer, requests):
        nonlocal in_flight, most
        while True:
            try:
                await _read_request(reader, requests)
            except asyncio.IncompleteReadError:
                return
            in_flight += 1
            most = max(most, in_flight)
            await asyncio.sleep(0.01)
            in_flight -= 1
            writer.write(_answer(200, b"{}"))

    async def main():
        server, url, requests = await _serve(handle)
        async with server, http.Client(url, connections=3) as client:
            answers = await asyncio.gather(*(client.get(f"/{i}") for i in range(12)))
        return answers, requests

    answers, requests = run(main())
    assert [a.status_code for a in answers] == [200] * 12 and len(requests) == 12
    assert most == 3
