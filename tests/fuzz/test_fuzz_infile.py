"""Property tests of the scanner across a LOAD DATA LOCAL exchange, both implementations.

The server's LOCAL INFILE request (0xFB + file name) ends its turn: the scanner stops right after it (`done`,
`local_infile`, no protocol error) however the bytes are chunked, and leaves any following bytes unconsumed. After
`infile_sent(seq)` the scanner follows the server's final answer as a fresh COM_QUERY response whose sequence ids
continue after the client's empty packet; its final state must match the response model and the other implementation.
Bounded: well under 20 s.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dbmesh._wire import mysql_framing as cy
from tests.fuzz.mysql_wire_gen import IMPLS, RESULT, Response, responses, scanner_state, split

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _exchange(impl: Any, request: bytes, request_cuts: list[int], answer: bytes, answer_cuts: list[int],
              file_packets: int, deprecate_eof: bool) -> tuple[dict[str, Any], dict[str, Any], int]:
    s = impl.ResponseScanner()
    s.start(RESULT, deprecate_eof)
    used = 0
    for chunk in split(request, request_cuts):
        if s.done:
            break
        used += s.feed(chunk)
    at_request = scanner_state(s)
    s.infile_sent(1 + file_packets)
    for chunk in split(answer, answer_cuts):
        if s.done:
            break
        s.feed(chunk)
    return at_request, scanner_state(s), used


@given(name=st.binary(max_size=40), trailing=st.binary(max_size=20), data=st.data(),
       file_packets=st.integers(1, 300), resp=responses(kind=RESULT))
@FUZZ
def test_infile_request_then_answer(name: bytes, trailing: bytes, data: st.DataObject, file_packets: int,
                                    resp: Response) -> None:
    request = cy.build_packet(b"\xfb" + name, 1)
    stream = request + trailing
    request_cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=6))
    start = (2 + file_packets) & 0xFF  # the server answers after the client's last packet
    answer, _, _ = resp.wire(start)
    answer_cuts = data.draw(st.lists(st.integers(0, len(answer)), max_size=6))
    results = [_exchange(impl, stream, request_cuts, answer, answer_cuts, file_packets, resp.deprecate_eof)
               for impl in IMPLS]
    assert results[0] == results[1]
    at_request, final, used = results[0]
    assert used == len(request)  # nothing after the request belongs to it
    assert at_request["done"] and at_request["local_infile"] and at_request["protocol_error"] is None
    assert at_request["packets"] == 1 and at_request["last_seq"] == 1
    expected = resp.expected(start)
    for key in ("done", "status", "warnings", "affected_rows", "last_insert_id", "is_error", "error_code",
                "protocol_error", "local_infile", "last_seq"):
        assert final[key] == expected[key], key


def test_infile_sent_without_a_request_is_refused() -> None:
    for impl in IMPLS:
        s = impl.ResponseScanner()
        s.start(RESULT, False)
        s.feed(cy.build_packet(b"\x00\x00\x00\x02\x00\x00\x00", 1))
        try:
            s.infile_sent(2)
        except ValueError:
            continue
        raise AssertionError(f"{impl.__name__}: infile_sent() accepted a finished OK response")
