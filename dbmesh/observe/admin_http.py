"""A minimal HTTP/1.1 admin endpoint: ``GET /metrics`` for Prometheus and ``GET /healthz`` for orchestrators.

It serves one request per connection and always closes afterwards (``Connection: close``): scrapers and probes
open a connection per request anyway, and it spares us keep-alive and pipelining. The request head is read
with a size limit and a timeout, so a slow or hostile client holds a connection for at most
``HEAD_TIMEOUT_SECONDS``. No exception leaves a connection handler: failures are logged on ``dbmesh.admin``
and answered with a status code when the connection still allows it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable
from http import HTTPStatus
from urllib.parse import urlsplit

from dbmesh.observe.metrics import CONTENT_TYPE, Metrics

logger = logging.getLogger("dbmesh.admin")

MAX_HEAD_BYTES = 8 * 1024
HEAD_TIMEOUT_SECONDS = 5.0
WRITE_TIMEOUT_SECONDS = 5.0

HealthCheck = Callable[[], dict[str, object]]

# RFC 9112 request-line: method SP request-target SP HTTP-version; method is an RFC 9110 token.
_REQUEST_LINE = re.compile(r"([!#$%&'*+\-.^_`|~0-9A-Za-z]+) (\S+) HTTP/1\.([01])")
_JSON = "application/json"


class _BadRequest(Exception):
    """The request head cannot be parsed; answered with 400.

    Not a DbMeshError on purpose: it is control flow inside this module, never raised past _respond().
    """


async def start_admin_http(host: str, port: int, metrics: Metrics, health: HealthCheck) -> asyncio.Server:
    """Start serving the admin endpoint on ``host:port`` (port 0 picks a free one; see ``server.sockets``).

    ``health()`` returns a JSON-serialisable dict; the answer is 200 when its ``"status"`` is ``"ok"`` and
    503 otherwise (or when ``health()`` raises).
    """

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _serve_connection(reader, writer, metrics, health)

    # limit bounds the StreamReader buffer, so readuntil() stops with LimitOverrunError at MAX_HEAD_BYTES
    # instead of buffering an endless head.
    return await asyncio.start_server(handle, host, port, limit=MAX_HEAD_BYTES)


async def _serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, metrics: Metrics,
                            health: HealthCheck) -> None:
    try:
        await _serve_request(reader, writer, metrics, health)
    except asyncio.CancelledError:
        # The loop is shutting down. This handler is a root task that nobody awaits, so ending it normally loses
        # nothing, while re-raising would reach the loop's exception handler on Python 3.11: start_server's
        # done-callback calls task.exception() on a cancelled task, which raises (fixed in 3.12).
        writer.transport.abort()


async def _serve_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, metrics: Metrics,
                         health: HealthCheck) -> None:
    try:
        response = await _respond(reader, metrics, health)
        if response is not None:
            writer.write(response)
            await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT_SECONDS)
    except (ConnectionError, TimeoutError):
        pass  # the client went away or stopped reading; nothing to tell it
    except Exception:
        logger.exception("admin endpoint: unexpected error while serving a request")
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except Exception:  # a reset while closing says nothing about us
            pass


async def _respond(reader: asyncio.StreamReader, metrics: Metrics, health: HealthCheck) -> bytes | None:
    """Read one request head and build the whole response, or None when the client sent nothing usable."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT_SECONDS)
    except asyncio.LimitOverrunError:
        return _response(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, b"request head too large\n")
    except TimeoutError:
        return _response(HTTPStatus.REQUEST_TIMEOUT, b"request head not received in time\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None  # connected and closed (a TCP probe): no request, no answer
        return _response(HTTPStatus.BAD_REQUEST, b"incomplete request head\n")
    try:
        method, path = _parse_head(head)
    except _BadRequest as exc:
        return _response(HTTPStatus.BAD_REQUEST, f"{exc}\n".encode())
    head_only = method == "HEAD"
    if path == "/metrics":
        if method not in ("GET", "HEAD"):
            return _response(HTTPStatus.METHOD_NOT_ALLOWED, b"use GET\n", allow="GET, HEAD")
        return _response(HTTPStatus.OK, metrics.render(), content_type=CONTENT_TYPE, head_only=head_only)
    if path == "/healthz":
        if method not in ("GET", "HEAD"):
            return _response(HTTPStatus.METHOD_NOT_ALLOWED, b"use GET\n", allow="GET, HEAD")
        status, body = _health_body(health)
        return _response(status, body, content_type=_JSON, head_only=head_only)
    return _response(HTTPStatus.NOT_FOUND, b"not found; try /metrics or /healthz\n", head_only=head_only)


def _parse_head(head: bytes) -> tuple[str, str]:
    """Return (method, path) from a request head ending in CRLF CRLF; header fields are checked, not used."""
    lines = head.decode("latin-1").split("\r\n")
    match = _REQUEST_LINE.fullmatch(lines[0])
    if match is None:
        raise _BadRequest("malformed request line")
    method, target = match.group(1), match.group(2)
    for line in lines[1:]:
        if not line:
            continue
        name, sep, _ = line.partition(":")
        if not sep or not name or name != name.strip():  # RFC 9112: no whitespace before the colon
            raise _BadRequest("malformed header field")
    # origin-form "/metrics?x" and absolute-form "http://host/metrics" both name a path.
    if not (target.startswith("/") or target.startswith(("http://", "https://"))):
        raise _BadRequest("unsupported request target")
    return method, urlsplit(target).path


def _health_body(health: HealthCheck) -> tuple[HTTPStatus, bytes]:
    try:
        report = health()
        body = json.dumps(report, default=str).encode()
    except Exception as exc:
        logger.exception("admin endpoint: health check failed")
        report = {"status": "error", "detail": f"health check failed: {type(exc).__name__}"}
        body = json.dumps(report).encode()
    status = HTTPStatus.OK if report.get("status") == "ok" else HTTPStatus.SERVICE_UNAVAILABLE
    return status, body


def _response(status: HTTPStatus, body: bytes, *, content_type: str = "text/plain; charset=utf-8",
              head_only: bool = False, allow: str | None = None) -> bytes:
    lines = [
        f"HTTP/1.1 {status.value} {status.phrase}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Cache-Control: no-store",
        "Connection: close",
    ]
    if allow is not None:
        lines.append(f"Allow: {allow}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + body
