"""The collector's write-behind thread: order, bounded waiting, and faults passed on."""

from __future__ import annotations

import threading

import pytest

from ingest.write_behind import WriteBehind


def test_jobs_run_in_submission_order() -> None:
    """Every job runs, one at a time, in the order it was submitted."""
    done: list[int] = []
    writer = WriteBehind("test", depth=2)
    for i in range(200):
        writer.submit(lambda i=i: done.append(i))
    writer.join()
    writer.close()
    assert done == list(range(200))


def test_submit_blocks_while_depth_jobs_wait() -> None:
    """With one job running and `depth` waiting, the next submit waits for room."""
    release = threading.Event()
    started = threading.Event()
    writer = WriteBehind("test", depth=1)

    def slow() -> None:
        started.set()
        release.wait()

    writer.submit(slow)
    assert started.wait(10)
    writer.submit(lambda: None)  # waits behind the running job: the one free place
    third_in = threading.Event()

    def submit_third() -> None:
        writer.submit(lambda: None)
        third_in.set()

    thread = threading.Thread(target=submit_third)
    thread.start()
    assert not writer.idle
    assert not third_in.is_set()  # no room: the submitter is held back
    release.set()
    assert third_in.wait(10)
    thread.join()
    writer.join()
    assert writer.idle
    writer.close()


def test_a_failed_job_is_raised_in_the_submitting_thread() -> None:
    """An exception in a job reaches the next join or submit; later jobs do not run."""
    ran: list[str] = []
    writer = WriteBehind("test")

    def broken() -> None:
        raise OSError("disk gone")

    writer.submit(broken)
    with pytest.raises(RuntimeError, match="background write failed") as caught:
        writer.join()
    assert isinstance(caught.value.__cause__, OSError)
    with pytest.raises(RuntimeError):
        writer.submit(lambda: ran.append("after"))
    writer.close()
    assert ran == []
