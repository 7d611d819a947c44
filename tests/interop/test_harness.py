"""The differential harness itself (no server): handle tokens, text normalisation, type checks."""

from __future__ import annotations

from geartrain.protocol import T

from .differential import Transcript, _norm_admin, type_mismatches


def test_handles_become_tokens_in_order_of_first_sight():
    tr = Transcript()
    for h in (b"H:vm:1", b"H:vm:10", b"H:vm:1"):
        tr.learn(h)
    assert tr.handles == {b"H:vm:1": b"<H1>", b"H:vm:10": b"<H2>"}
    assert tr.norm_arg(b"H:vm:10") == b"<H2>"
    assert tr.norm_arg(b"H:vm:100") == b"H:vm:100"  # unknown handles are left alone
    # a handle that is a prefix of another is not replaced inside it
    assert tr.norm_text(b"H:vm:10\t0\t0\t1\nH:vm:1\t1\n") == b"<H2>\t0\t0\t1\n<H1>\t1\n"
    assert tr.token_to_handle(b"cancel job <H2>") == b"cancel job H:vm:10"


def test_admin_normalisation():
    tr = Transcript()
    assert _norm_admin(b"getpid", [b"OK 12345\n"], tr) == [b"OK <PID>\n"]
    assert _norm_admin(b"version", [b"OK 1.1.20+ds\n"], tr) == [b"OK <VERSION>\n"]
    assert _norm_admin(b"workers", [b"31 127.0.0.1 - : f\n", b"7 127.0.0.1 id : g\n", b".\n"], tr) == [
        b"FD 127.0.0.1 - : f\n", b"FD 127.0.0.1 id : g\n", b".\n"]
    # hash-ordered listings compare sorted; the terminator stays last
    assert _norm_admin(b"STATUS", [b"b\t0\t0\t0\n", b"a\t1\t0\t0\n", b".\n"], tr) == [
        b"a\t1\t0\t0\n", b"b\t0\t0\t0\n", b".\n"]
    # errors and other single lines are kept byte for byte
    assert _norm_admin(b"bogus", [b"ERR UNKNOWN_COMMAND Unknown+server+commandbogus\r\n"], tr) == [
        b"ERR UNKNOWN_COMMAND Unknown+server+commandbogus\r\n"]
    assert _norm_admin(b"getpid", [b"OK 12 extra\n"], tr) == [b"OK 12 extra\n"]  # odd shapes are not hidden


def test_type_mismatches_names_the_step():
    tr = Transcript()
    tr.types.append((3, (T.JOB_CREATED,), (T.JOB_CREATED,)))
    tr.types.append((7, (T.NO_JOB,), (T.JOB_ASSIGN,)))
    assert type_mismatches(tr) == ["step #7: expected ['NO_JOB'], got ['JOB_ASSIGN']"]
