"""One background thread that runs jobs in order, so a write overlaps the next batch's work."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

__all__ = ["WriteBehind"]

Job = Callable[[], None]


class WriteBehind:
    """Runs submitted jobs one at a time, in submission order, on its own thread.

    At most `depth` jobs wait behind the running one: `submit` blocks beyond that, which bounds
    memory (and the messages held unacknowledged) while InfluxDB is slow. An exception in a job
    stops the thread and is raised again by the next `submit` or `join`, so a fault is never
    swallowed.
    """

    def __init__(self, name: str, depth: int = 1) -> None:
        self._depth = depth
        self._jobs: deque[Job] = deque()
        self._running = False
        self._error: BaseException | None = None
        self._closed = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> None:
        """Queue `job`; blocks while `depth` jobs already wait."""
        with self._changed:
            while len(self._jobs) >= self._depth and self._error is None:
                self._changed.wait()
            self._raise()
            self._jobs.append(job)
            self._changed.notify_all()

    @property
    def idle(self) -> bool:
        """True when no job runs or waits."""
        with self._changed:
            return not self._jobs and not self._running

    def join(self) -> None:
        """Wait until every submitted job has run."""
        with self._changed:
            while (self._jobs or self._running) and self._error is None:
                self._changed.wait()
            self._raise()

    def close(self) -> None:
        """Run what was submitted, then end the thread (errors are raised by `join`)."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        self._thread.join()

    def _raise(self) -> None:
        if self._error is not None:
            raise RuntimeError("a background write failed") from self._error

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._jobs and not self._closed:
                    self._changed.wait()
                if not self._jobs:
                    return
                job = self._jobs.popleft()
                self._running = True
                self._changed.notify_all()
            try:
                job()
            except BaseException as exc:  # handed to the submitting thread
                with self._changed:
                    self._error = exc
                    self._running = False
                    self._jobs.clear()
                    self._changed.notify_all()
                return
            with self._changed:
                self._running = False
                self._changed.notify_all()
