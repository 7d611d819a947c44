"""Admin text formatting, byte for byte as gearmand 1.1.20 writes it (values checked against the real binary)."""

from __future__ import annotations

from geartrain.protocol import admin


def test_status_format():
    assert admin.status([(b"f2", 1, 0, 1), (b"f1", 2, 0, 2)]) == b"f2\t1\t0\t1\nf1\t2\t0\t2\n.\n"
    assert admin.status([]) == b".\n"


def test_priority_status_format():
    assert admin.priority_status([(b"f", 1, 2, 3, 4)]) == b"f\t1\t2\t3\t4\n.\n"


def test_workers_format():
    rows = [(22, b"127.0.0.1", b"-", []), (20, b"127.0.0.1", b"wid", [b"f2", b"f1", b"f1"])]
    assert admin.workers(rows) == b"22 127.0.0.1 - :\n20 127.0.0.1 wid : f2 f1 f1\n.\n"


def test_show_formats():
    assert admin.show_jobs([(b"H:vm:1", 0, 0, 1)]) == b"H:vm:1\t0\t0\t1\n.\n"
    assert admin.show_unique_jobs([b"", b"u1"]) == b"\nu1\n.\n"


def test_errors_and_values():
    assert admin.err_unknown(b"foo") == b"ERR UNKNOWN_COMMAND Unknown+server+commandfoo\r\n"
    assert admin.err_args(b"maxqueue") == (
        b"ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+maxqueue\r\n")
    assert admin.ok_value(1234) == b"OK 1234\n"
    assert admin.ok_value("INFO") == b"OK INFO\n"
    assert admin.OK == b"OK\r\n"


def test_split():
    assert admin.split(b"  show   unique jobs ") == [b"show", b"unique", b"jobs"]
    assert admin.split(b"") == []


def test_gearmand_hash_order_matches_gearmand():
    # gearmand 1.1.20 listed these functions (created in this order) in this order with `status`
    created = [b"alpha", b"beta", b"gamma", b"x\xe9y", b"reverse", b"fib", b"a", b"b", b"c", b"d",
               b"longer_function_name_here", b"e", b"\xff\xfe"]
    listed = [b"x\xe9y", b"c", b"d", b"b", b"alpha", b"e", b"reverse", b"fib", b"gamma", b"\xff\xfe",
              b"longer_function_name_here", b"a", b"beta"]
    assert admin.gearmand_order(created, admin.gearmand_hash) == listed
    assert admin.gearmand_bucket(b"f2") < admin.gearmand_bucket(b"f1")


def test_gearmand_hash_is_never_zero():
    assert admin.gearmand_hash(b"") == 1
