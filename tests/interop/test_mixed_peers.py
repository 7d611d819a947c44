"""Every kind of peer on one server at once: C, Perl and PHP workers serving C, Perl and PHP clients."""

from __future__ import annotations

import pytest

from .conftest import PERL_DIR, PHP_DIR, Background, wait_workers
from .wire import connect, status_table

pytestmark = pytest.mark.interop


def test_c_perl_php_workers_and_clients_together(any_server, c_programs, perl_gearman, php_gearman, background):
    port = str(any_server.port)
    workers = [
        background([str(c_programs["gt_worker"]), "-p", port, "-f", "rev"]),
        background([perl_gearman, str(PERL_DIR / "worker.pl"), any_server.address, "0", "rev"]),
        background([php_gearman, str(PHP_DIR / "worker.php"), any_server.host, port, "0", "rev"]),
    ]
    wait_workers(any_server, b"rev", count=3)
    clients: list[Background] = [
        background([str(c_programs["gt_client"]), "-p", port, "many", "100", "rev"]),
        background([perl_gearman, str(PERL_DIR / "client.pl"), any_server.address, "many", "100", "rev"]),
        background([php_gearman, str(PHP_DIR / "client.php"), any_server.host, port, "many", "100", "rev"]),
    ]
    for client in clients:
        status, out, err = client.wait(60)
        assert (status, out) == (0, b"COMPLETED 100 WRONG 0 FAILED 0\n"), err
    with connect(any_server) as admin:
        assert status_table(admin)[b"rev"] == (0, 0, 3)
    # each job was done exactly once, by one of the three workers
    assert sum(w.stop()[0].count(b"JOB rev ") for w in workers) == 300
