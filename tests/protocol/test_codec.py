"""Codec tests: round trip of every packet type, reads split at every byte, garbage."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geartrain.protocol import FATAL, PACKETS, PARSE_ERROR, REQ, RES, TEXT, Parser, T, pack, pack_req
from geartrain.protocol.codec import SPLIT_MAX
from geartrain.protocol.packets import Direction

SPECS = [p for p in PACKETS if p is not None]


def fields_for(spec, draw_bytes):
    """Fields without NULs except in the last one, which may hold anything."""
    out = [draw_bytes(nul=False) for _ in spec.fields[:-1]]
    if spec.fields:
        out.append(draw_bytes(nul=True))
    return out


@st.composite
def packets(draw):
    spec = draw(st.sampled_from(SPECS))
    magic = REQ if spec.direction & Direction.REQ else RES
    if spec.direction == Direction.BOTH:
        magic = draw(st.sampled_from([REQ, RES]))

    def draw_bytes(nul: bool) -> bytes:
        b = draw(st.binary(max_size=40))
        return b if nul else b.replace(b"\0", b"")

    return magic, spec, fields_for(spec, draw_bytes)


@settings(max_examples=400)
@given(packets(), st.integers(min_value=1, max_value=50))
def test_round_trip_every_type(pkt, chunk):
    magic, spec, fields = pkt
    wire = pack(magic, spec.type, *fields)
    parser = Parser(magic, text=False)
    events = []
    for i in range(0, len(wire), chunk):
        events += parser.feed(wire[i : i + chunk])
    assert events == [(spec.type, tuple(fields))]
    assert parser.buffered == 0


def test_every_type_is_covered_by_round_trip_strategy():
    assert {p.type for p in SPECS} == set(T) - {T.TEXT}


def test_split_at_every_byte():
    stream = (
        pack_req(T.CAN_DO, b"reverse")
        + pack_req(T.SUBMIT_JOB, b"reverse", b"", b"te\0st")
        + b"status\r\n"
        + pack_req(T.GRAB_JOB_ALL)
        + b"workers\n"
        + pack_req(T.ECHO_REQ, b"")
    )
    whole = Parser().feed(stream)
    assert [e[0] for e in whole] == [T.CAN_DO, T.SUBMIT_JOB, TEXT, T.GRAB_JOB_ALL, TEXT, T.ECHO_REQ]
    for cut in range(1, len(stream)):
        p = Parser()
        assert p.feed(stream[:cut]) + p.feed(stream[cut:]) == whole
    one = Parser()
    assert [e for i in range(len(stream)) for e in one.feed(stream[i : i + 1])] == whole


def test_response_magic_to_server_is_an_error_and_stream_goes_on():
    p = Parser()
    events = p.feed(pack(RES, T.NOOP) + pack_req(T.ECHO_REQ, b"x"))
    assert events[0] == (PARSE_ERROR, (b"INVALID_MAGIC", b"Request magic expected"))
    assert events[1] == (T.ECHO_REQ, (b"x",))


def test_server_packet_type_sent_by_client_is_rejected():
    p = Parser()
    assert p.feed(pack_req(T.JOB_ASSIGN, b"H:1", b"f", b"d"))[0][0] == PARSE_ERROR
    assert p.feed(pack_req(T.ECHO_REQ, b"ok")) == [(T.ECHO_REQ, (b"ok",))]


def test_unknown_type_and_missing_nuls():
    p = Parser()
    bad_type = b"\0REQ" + (99).to_bytes(4, "big") + (3).to_bytes(4, "big") + b"abc"
    missing = b"\0REQ" + int(T.SUBMIT_JOB).to_bytes(4, "big") + (4).to_bytes(4, "big") + b"func"
    events = p.feed(bad_type + missing + pack_req(T.ECHO_REQ, b"z"))
    assert [e[1][0] for e in events[:2]] == [b"INVALID_COMMAND", b"INVALID_PACKET"]
    assert events[2] == (T.ECHO_REQ, (b"z",))


def _raw(ptype: int, payload: bytes) -> bytes:
    return b"\0REQ" + int(ptype).to_bytes(4, "big") + len(payload).to_bytes(4, "big") + payload


@pytest.mark.parametrize("ptype", [T.WORK_COMPLETE, T.WORK_DATA, T.WORK_WARNING, T.WORK_EXCEPTION])
@pytest.mark.parametrize("pad", [0, SPLIT_MAX], ids=["small", "big"])
def test_a_result_sent_as_the_bare_handle_has_empty_data(ptype, pad):
    # Perl's Gearman::Worker sends a false result ("" or "0") as the handle alone, without its NUL
    handle = b"H:x:" + b"1" * pad
    events = Parser().feed(_raw(ptype, handle) + pack_req(T.ECHO_REQ, b"z"))
    assert events == [(ptype, (handle, b"")), (T.ECHO_REQ, (b"z",))]


@pytest.mark.parametrize(("payload", "args"), [
    (b"H:x:1", (b"H:x:1", b"0", b"0")),  # Perl's send_work_status with a numerator of 0
    (b"H:x:1\x003", (b"H:x:1", b"3", b"0")),  # Perl's send_work_status drops the denominator
    (b"H:x:1\x003\x0010", (b"H:x:1", b"3", b"10")),
])
def test_work_status_missing_its_tail(payload, args):
    assert Parser().feed(_raw(T.WORK_STATUS, payload)) == [(T.WORK_STATUS, args)]


@pytest.mark.parametrize(("ptype", "payload"), [
    (T.SUBMIT_JOB, b"func"), (T.SUBMIT_JOB, b"func\x00uniq"), (T.CAN_DO_TIMEOUT, b"func"),
    (T.JOB_ASSIGN, b"H:1"),
])
def test_other_packets_short_of_fields_are_errors(ptype, payload):
    parser = Parser(RES if ptype == T.JOB_ASSIGN else REQ)
    raw = _raw(ptype, payload)
    if ptype == T.JOB_ASSIGN:
        raw = RES + raw[4:]
    events = parser.feed(raw)
    assert events == [(PARSE_ERROR, (b"INVALID_PACKET", b"Packet has too few arguments"))]


def test_bad_magic_is_fatal():
    p = Parser()
    events = p.feed(b"\0XYZ" + bytes(8) + pack_req(T.ECHO_REQ, b"z"))
    assert events == [(FATAL, (b"INVALID_MAGIC", b"Bad packet magic"))]
    assert p.broken and p.feed(pack_req(T.ECHO_REQ, b"z")) == []


def test_huge_size_field_is_fatal_without_waiting_for_the_payload():
    p = Parser(max_packet_size=1024)
    events = p.feed(b"\0REQ" + int(T.ECHO_REQ).to_bytes(4, "big") + (2**32 - 1).to_bytes(4, "big"))
    assert events[0][0] == FATAL and events[0][1][0] == b"ARGUMENT_TOO_LARGE"


def test_endless_admin_line_is_fatal():
    p = Parser(max_line=100)
    assert p.feed(b"x" * 50) == []
    assert p.feed(b"x" * 60)[0][0] == FATAL


def test_admin_line_over_the_limit_is_fatal_even_when_it_arrives_whole():
    p = Parser(max_line=100)
    assert p.feed(b"x" * 100 + b"\n") == [(TEXT, (b"x" * 100,))]
    assert p.feed(b"y" * 101 + b"\n")[0][0] == FATAL


def test_client_parser_refuses_text():
    p = Parser(RES)
    assert p.feed(b"OK\r\n")[0][0] == FATAL


def test_large_payload_in_small_reads():
    data = bytes(range(256)) * 4096  # 1 MiB
    wire = pack_req(T.SUBMIT_JOB_BG, b"f", b"", data)
    p = Parser()
    events = []
    for i in range(0, len(wire), 65536):
        events += p.feed(wire[i : i + 65536])
    assert events == [(T.SUBMIT_JOB_BG, (b"f", b"", data))]


@settings(max_examples=300)
@given(st.binary(max_size=200), st.integers(min_value=1, max_value=30))
def test_garbage_never_raises(data, chunk):
    p = Parser(max_packet_size=4096, max_line=256)
    for i in range(0, len(data), chunk):
        for ptype, args in p.feed(data[i : i + chunk]):
            assert isinstance(ptype, int) and all(isinstance(a, bytes) for a in args)
