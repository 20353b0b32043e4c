"""Property/fuzz tests of the PostgreSQL wire layer: hostile bytes into the framing (both implementations), the
message decoders and the startup state machines.

Contracts checked:
- MessageReader: fails only with FramingError; the Cython reader and the Python twin return identical messages
  and errors for the same bytes and chunking, and never return more bytes than were fed.
- BackendScanner: never raises; consumes at most what it is fed, stops at its target; both implementations end in
  identical states.
- Decoders and state machines: FramingError is the only exception a decoder raises; ServerStartup and ClientStartup
  never raise.
Bounded: every test stays well under 20 s.
"""

from __future__ import annotations

import struct
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dbmesh._wire import pg_framing as cy
from dbmesh._wire import pypgframing as py
from dbmesh.protocol.postgresql import client_startup as cs
from dbmesh.protocol.postgresql import messages as m
from dbmesh.protocol.postgresql import server_startup as ss

FUZZ = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def frame(t: int, payload: bytes) -> bytes:
    return bytes((t,)) + struct.pack("!I", len(payload) + 4) + payload


@st.composite
def chunked(draw: Any, data: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=8)))
    out, prev = [], 0
    for c in [*cuts, len(data)]:
        out.append(data[prev:c])
        prev = c
    return out


BACKEND_TYPES = b"ZDECGHWSANTtn123sIvKRdc"


@st.composite
def backend_stream(draw: Any) -> bytes:
    """Mostly well-formed backend messages, with planted garbage."""
    parts = []
    for _ in range(draw(st.integers(0, 12))):
        t = draw(st.sampled_from(BACKEND_TYPES))
        if t == ord("Z"):
            payload = draw(st.sampled_from((b"I", b"T", b"E", b"", b"XY")))
        elif t == ord("E"):
            fields = draw(st.lists(st.tuples(st.sampled_from(b"SVCMDHPc\x00\xff"), st.binary(max_size=300)),
                                   max_size=5))
            payload = b"".join(bytes((c,)) + v.replace(b"\x00", b"") + b"\x00" for c, v in fields) + b"\x00"
        elif t == ord("C"):
            payload = draw(st.binary(max_size=80))
        else:
            payload = draw(st.binary(max_size=40))
        parts.append(frame(t, payload))
    data = b"".join(parts)
    if draw(st.booleans()) and data:
        i = draw(st.integers(0, len(data) - 1))
        data = data[:i] + draw(st.binary(max_size=6)) + data[i + draw(st.integers(0, 6)):]
    return data


def scanner_state(s: Any) -> tuple[Any, ...]:
    return (s.ready_count, s.tx_status, s.rows, s.errors, s.last_error_sqlstate, s.copy_in, s.copy_out,
            s.copy_both, s.parameter_status_changed, s.notifications, s.messages, s.last_type, s.last_command_tag,
            s.protocol_error, s.mid_message())


@FUZZ
@given(st.data(), st.integers(0, 4))
def test_scanner_twins_agree_and_never_raise(data: Any, target: int) -> None:
    stream = data.draw(backend_stream())
    chunks = data.draw(chunked(stream))
    a, b = cy.BackendScanner(), py.BackendScanner()
    a.target = b.target = target
    for c in chunks:
        na, nb = a.feed(c), b.feed(c)
        assert na == nb and 0 <= na <= len(c)
        assert scanner_state(a) == scanner_state(b)
    if target:
        assert a.ready_count <= target


def run_reader(impl: Any, chunks: list[bytes], startup_first: int, max_message: int) -> list[Any]:
    r = impl.MessageReader(max_message=max_message)
    events: list[Any] = []
    fed = out = 0
    startups = startup_first
    for c in chunks:
        r.feed(c)
        fed += len(c)
        while True:
            try:
                if startups:
                    got: Any = r.read_startup()
                    if got is not None:
                        startups -= 1
                        out += len(got) + 4
                else:
                    got = r.read()
                    if got is not None:
                        out += len(got[1]) + 5
            except impl.FramingError as exc:
                events.append(("error", str(exc)))
                return events
            if got is None:
                break
            events.append(got)
        assert out <= fed and r.buffered() == fed - out
    return events


@FUZZ
@given(st.data(), st.integers(0, 2), st.sampled_from((4, 64, 1 << 20)))
def test_reader_twins_agree(data: Any, startup_first: int, max_message: int) -> None:
    raw = data.draw(st.one_of(
        st.binary(max_size=200),
        st.lists(st.tuples(st.sampled_from(b"QPBDESHXpdcf"), st.binary(max_size=30)), max_size=6).map(
            lambda ms: b"".join(frame(t, p) for t, p in ms)),
    ))
    if startup_first and data.draw(st.booleans()):
        raw = m.StartupMessage(196608, {"user": "u"}).encode() + raw
    chunks = data.draw(chunked(raw))
    assert run_reader(cy, chunks, startup_first, max_message) == run_reader(py, chunks, startup_first, max_message)


FRONTEND_DECODERS = [*m.FRONTEND.values(), m.PasswordMessage, m.SASLInitialResponse, m.SASLResponse]
BACKEND_DECODERS = [*m.BACKEND.values(), m.ErrorFields]


@FUZZ
@given(st.binary(max_size=120), st.integers(0, 255))
def test_decoders_raise_only_framing_errors(payload: bytes, t: int) -> None:
    for cls in (*FRONTEND_DECODERS, *BACKEND_DECODERS):
        try:
            cls.decode(payload)  # type: ignore[attr-defined]
        except cy.FramingError:
            pass
    for fn in (m.decode_startup, m.decode_authentication):
        try:
            fn(payload)
        except cy.FramingError:
            pass
    for dispatch in (m.decode_frontend, m.decode_backend):
        try:
            dispatch(t, payload)
        except cy.FramingError:
            pass


@FUZZ
@given(st.binary(max_size=120))
def test_round_trip_of_whatever_decodes(payload: bytes) -> None:
    """A decoder that accepts bytes must re-encode them exactly (no silent normalisation on the data path)."""
    for cls in (*FRONTEND_DECODERS, *BACKEND_DECODERS):
        try:
            decoded = cls.decode(payload)  # type: ignore[attr-defined]
        except cy.FramingError:
            continue
        assert decoded.payload() == payload, cls


def _server(method: str) -> ss.ServerStartup:
    return ss.ServerStartup(users=lambda u, d: ss.Credential(u, "pw") if u == "u" else None, tls_available=True,
                            method_for=lambda _u: method)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(("scram-sha-256", "md5", "password")), st.binary(max_size=80),
       st.lists(st.tuples(st.sampled_from(b"pQX"), st.binary(max_size=80)), max_size=3))
def test_server_startup_never_raises(method: str, body: bytes, messages: list[tuple[int, bytes]]) -> None:
    server = _server(method)
    server.feed_startup(m.StartupMessage(196608, {"user": "u"}).body() if not body else body)
    for t, p in messages:
        out = server.feed(t, p)
        assert all(isinstance(o, ss.Reply | ss.StartTls | ss.Cancel | ss.Authenticated | ss.Rejected) for o in out)
    server = _server(method)
    server.feed_startup(m.StartupMessage(196608, {"user": "u"}).body())
    for t, p in messages:
        p = m.SASLInitialResponse("SCRAM-SHA-256", p).payload() if t == ord("Q") else p
        server.feed(ord("p"), p)


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(b"RENSKZvX"), st.binary(max_size=60)), max_size=6))
def test_client_startup_never_raises(messages: list[tuple[int, bytes]]) -> None:
    client = cs.ClientStartup("u", "pw")
    client.start()
    for t, p in messages:
        if t == ord("R") and p[:1] == b"!":  # steer some messages into valid authentication requests
            p = struct.pack("!i", p[1] % 13 if len(p) > 1 else 10) + p[2:]
        out = client.feed(t, p)
        assert all(isinstance(o, cs.Send | cs.Ready | cs.Failed) for o in out)
