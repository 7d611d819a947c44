"""What the libraries say when a job goes wrong reads as text, not as Python internals (issue #13): the worker
logs a function's exception once, with its traceback; a client's timeout names the job."""

from __future__ import annotations

import logging

import pytest

from geartrain.client import Client
from geartrain.errors import JobException, JobTimeout
from tests.test_client import worker_thread


def kaboom(job):
    raise ValueError("kaboom " + job.data.decode())


@pytest.mark.parametrize("concurrency", [1, 2], ids=["inline", "threads"])
def test_a_function_that_raises_is_logged_once_with_its_traceback(geartrain, caplog, concurrency):
    caplog.set_level(logging.INFO, logger="geartrain.worker")
    with worker_thread(geartrain.address, {"boom": kaboom}, concurrency=concurrency), \
            Client(geartrain.address) as client:
        job = client.submit_job("boom", b"x")
        with pytest.raises(JobException, match="ValueError: kaboom x"):
            job.result(10)
    raised = [r for r in caplog.records if "raised" in r.getMessage()]
    assert len(raised) == 1
    record = raised[0]
    assert record.levelno == logging.WARNING
    assert record.getMessage() == f"job {job.handle.decode()} (boom) raised ValueError: kaboom x"
    assert record.exc_info and record.exc_info[0] is ValueError
    text = logging.Formatter().format(record)
    assert "Traceback (most recent call last)" in text and 'raise ValueError("kaboom "' in text


def test_a_timeout_names_the_job_as_text(geartrain):
    with Client(geartrain.address) as client:
        job = client.submit_job("nobody", b"x")
        with pytest.raises(JobTimeout) as caught:
            job.result(0.2)
    assert str(caught.value) == f"job nobody ({job.handle.decode()}) not done within 0.2s"
