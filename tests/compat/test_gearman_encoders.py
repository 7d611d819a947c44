"""Data encoders, job request states and module surface of geartrain.compat.gearman (no server needed)."""

from __future__ import annotations

import json

import pytest

import geartrain.compat.gearman as gearman
from geartrain.compat.gearman.encoders import encode_with
from geartrain.compat.gearman.util import disambiguate_server_parameter


def test_text_encoder_round_trips_text_and_any_bytes():
    enc = gearman.TextDataEncoder
    assert enc.encode("héllo") == "héllo".encode()
    assert enc.decode("héllo".encode()) == "héllo"
    blob = bytes(range(256))
    assert enc.encode(enc.decode(blob)) == blob
    assert enc.encode(bytearray(b"ab")) == b"ab" and enc.encode(None) == b""
    with pytest.raises(TypeError):
        enc.encode(42)


def test_bytes_encoder_insists_on_bytes():
    enc = gearman.BytesDataEncoder
    assert enc.encode(b"\x00\xff") == b"\x00\xff" and enc.decode(b"\x00\xff") == b"\x00\xff"
    with pytest.raises(TypeError):
        enc.encode("text")
    assert gearman.NoopEncoder is enc


def test_python2_style_encoder_returning_str_is_utf8_encoded():
    class JSONDataEncoder(gearman.DataEncoder):
        @classmethod
        def encode(cls, encodable_object):
            return json.dumps(encodable_object)

        @classmethod
        def decode(cls, decodable_string):
            return json.loads(decodable_string)

    assert encode_with(JSONDataEncoder, {"a": "é"}) == b'{"a": "\\u00e9"}'
    with pytest.raises(NotImplementedError):
        encode_with(gearman.DataEncoder, "x")


def test_request_complete_depends_on_background():
    job = gearman.GearmanJob(None, None, "t", "u", "d")
    fg = gearman.GearmanJobRequest(job)
    bg = gearman.GearmanJobRequest(job, background=True)
    table = {gearman.JOB_UNKNOWN: (False, False), gearman.JOB_PENDING: (False, False),
             gearman.JOB_CREATED: (False, True), gearman.JOB_FAILED: (True, True),
             gearman.JOB_COMPLETE: (True, True)}
    for state, expected in table.items():
        fg.state = bg.state = state
        assert (fg.complete, bg.complete) == expected, state
    assert fg.unique == "u" and fg.job is job and fg.priority is gearman.PRIORITY_NONE


def test_constants_have_python_gearman_values():
    assert (gearman.JOB_UNKNOWN, gearman.JOB_PENDING, gearman.JOB_CREATED, gearman.JOB_FAILED,
            gearman.JOB_COMPLETE) == ("UNKNOWN", "PENDING", "CREATED", "FAILED", "COMPLETE")
    assert (gearman.PRIORITY_NONE, gearman.PRIORITY_LOW, gearman.PRIORITY_HIGH) == (None, "LOW", "HIGH")
    for name in ("ConnectionError", "ServerUnavailable", "ProtocolError", "UnknownCommandError",
                 "ExceededConnectionAttempts", "InvalidClientState", "InvalidWorkerState", "InvalidAdminClientState"):
        assert issubclass(getattr(gearman, name), gearman.GearmanError)
        assert getattr(gearman.errors, name) is getattr(gearman, name)


def test_server_address_forms():
    assert disambiguate_server_parameter("h:1") == ("h", 1)
    assert disambiguate_server_parameter("h") == ("h", 4730)
    assert disambiguate_server_parameter(("h", 2)) == ("h", 2)
    assert disambiguate_server_parameter("[::1]:3") == ("::1", 3)


def test_submit_refuses_single_job_where_a_list_is_expected():
    client = gearman.GearmanClient([])
    with pytest.raises(TypeError):
        client.submit_multiple_jobs(dict(task="t", data="d"))
