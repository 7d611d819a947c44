"""Reading admin replies (protocol/admin_parse.py) against what protocol/admin.py writes."""

from __future__ import annotations

import pytest

from geartrain.protocol import admin
from geartrain.protocol.admin_parse import (
    JobRow,
    PriorityRow,
    ReplyLines,
    StatusRow,
    WorkerRow,
    is_list_command,
    job_row,
    priority_row,
    status_row,
    worker_row,
)


def lines(reply: bytes) -> list[str]:
    return reply.decode().replace("\r", "").split("\n")[:-1]


def collect(command: str, reply: bytes) -> ReplyLines:
    collector = ReplyLines(command)
    done = [collector.add(line) for line in lines(reply)]
    assert done[-1] and not any(done[:-1])  # complete at its last line, not before
    return collector


def test_rows_read_back_what_the_server_writes():
    got = collect("status", admin.status([(b"f", 3, 1, 2), (b"g", 0, 0, 0)]))
    assert [status_row(line) for line in got.lines] == [StatusRow("f", 3, 1, 2), StatusRow("g", 0, 0, 0)]
    got = collect("prioritystatus", admin.priority_status([(b"f", 1, 2, 3, 4)]))
    assert [priority_row(line) for line in got.lines] == [PriorityRow("f", 1, 2, 3, 4)]
    got = collect("workers", admin.workers([(7, b"127.0.0.1", b"-", [b"a", b"b"]), (8, b"::1", b"w", [])]))
    assert [worker_row(line) for line in got.lines] == [WorkerRow("7", "127.0.0.1", "-", ("a", "b")),
                                                        WorkerRow("8", "::1", "w", ())]
    got = collect("show jobs", admin.show_jobs([(b"H:x:1", 0, 0, 1)]))
    assert [job_row(line) for line in got.lines] == [JobRow("H:x:1", 0, 0, 1)]
    assert collect("show unique jobs", admin.show_unique_jobs([b"u1", b""])).lines == ["u1", ""]


def test_one_line_answers_and_errors():
    assert collect("version", admin.ok_value("1.1.20")).lines == ["OK 1.1.20"]
    got = collect("bogus", admin.err_unknown(b"bogus"))
    assert got.error == ("UNKNOWN_COMMAND", "Unknown server commandbogus")
    got = collect("show jobs", admin.ERR_UNKNOWN_SHOW)  # an error ends even a list command
    assert got.error == ("UNKNOWN_SHOW_ARGUMENTS", "")
    assert is_list_command("Show   Jobs") and not is_list_command("show jobs x") and not is_list_command("getpid")


@pytest.mark.parametrize("parse, line", [(status_row, "f\t1\t2"), (status_row, "f\tx\t0\t0"),
                                         (priority_row, "f\t1\t2\t3"), (worker_row, "7 127.0.0.1 -"),
                                         (job_row, "H:x:1\t0\t0")])
def test_a_line_that_does_not_fit_raises_value_error(parse, line):
    with pytest.raises(ValueError):
        parse(line)
