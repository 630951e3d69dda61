"""Shared process handling for the private services: spawn, track, probe, stop."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = [
    "ManagedProcess",
    "ServiceError",
    "ensure_installed",
    "find_binary",
    "free_port",
    "port_accepts",
    "tail",
]

logger = logging.getLogger(__name__)

# Daemons often live in sbin, which is not on a non-root user's PATH.
_EXTRA_BIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")
_POLL_S = 0.05


class ServiceError(RuntimeError):
    """A private service could not be installed, started or stopped."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a text file, or a note that it is missing."""
    try:
        with path.open("rb") as file:
            file.seek(0, os.SEEK_END)
            file.seek(max(0, file.tell() - 16384))
            data = file.read()
    except FileNotFoundError:
        return f"({path} does not exist)"
    text = data.decode("utf-8", errors="replace").splitlines()[-lines:]
    return "\n".join(text) if text else f"({path} is empty)"


def find_binary(binary: str) -> Path | None:
    """Locate an executable on PATH or in the usual sbin directories."""
    search = os.pathsep.join([os.environ.get("PATH", os.defpath), *_EXTRA_BIN_DIRS])
    found = shutil.which(binary, path=search)
    return Path(found) if found else None


def ensure_installed(binary: str, apt_package: str) -> Path:
    """Return the path of `binary`, installing `apt_package` with apt-get when possible."""
    found = find_binary(binary)
    if found is not None:
        return found
    apt_get = shutil.which("apt-get")
    if apt_get is None or os.geteuid() != 0:
        raise ServiceError(
            f"`{binary}` is not installed. Install the `{apt_package}` package "
            f"(Debian/Ubuntu: `sudo apt-get install {apt_package}`) and try again."
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [apt_get, "install", "-y", "--no-install-recommends", apt_package]
    logger.info("installing %s with apt-get", apt_package)
    result = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        # Fresh containers ship without package lists; refresh them once and retry.
        logger.info("apt-get install failed, running apt-get update and retrying")
        subprocess.run([apt_get, "update"], env=env, capture_output=True, check=False)
        result = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
    found = find_binary(binary)
    if result.returncode != 0 or found is None:
        output = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
        raise ServiceError(
            f"could not install `{apt_package}` (apt-get exit {result.returncode}); "
            f"install it by hand so that `{binary}` is on PATH.\n{output}"
        )
    return found


def _read_proc(pid: int, name: str) -> bytes | None:
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes()
    except OSError:
        return None


def _stat_fields(pid: int) -> list[bytes] | None:
    """/proc/PID/stat from field 3 (state) on: state, ppid, ...; None if gone."""
    stat = _read_proc(pid, "stat")
    # The fields follow the last ")": the command name itself may contain ") ".
    return stat.rpartition(b")")[2].split() if stat else None


def _alive(pid: int, *, reap: bool) -> bool:
    """Whether pid is a live process; with `reap`, first collect it if it is our exited child."""
    if reap:
        try:
            reaped, _status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return False  # Already collected: the PID may even belong to someone else now.
        else:
            if reaped == pid:
                return False
    fields = _stat_fields(pid)
    if fields is None:
        return False
    # A zombie's parent has not reaped it yet (e.g. a container init that never reaps):
    # it will never answer, so it counts as dead -- but only once its last thread is gone.
    # A multi-threaded daemon's main thread shows "Z" while the others still hold its
    # sockets open (field 20 of stat is num_threads).
    return fields[0] not in (b"Z", b"X") or int(fields[17]) > 1


class ManagedProcess:
    """One daemon started detached from this process and tracked through a PID file."""

    def __init__(
        self,
        name: str,
        *,
        binary: str,
        marker: str,
        pid_path: Path,
        console_log: Path,
        extra_logs: Sequence[Path] = (),
    ) -> None:
        """Track `binary` whose command line must contain `marker` (its config path)."""
        self.name = name
        self.binary = binary
        self.marker = marker
        self.pid_path = pid_path
        self.console_log = console_log
        self.extra_logs = tuple(extra_logs)
        # The PID this object spawned. Other PIDs are reaped only after /proc showed they
        # run our config, so a stale PID file never makes us collect an unrelated child.
        self._child: int | None = None

    def _read_pid_file(self) -> int | None:
        try:
            return int(self.pid_path.read_text(encoding="ascii").strip())
        except (FileNotFoundError, ValueError):
            return None

    def _owns(self, pid: int) -> bool:
        """Whether pid still runs our binary with our config (PIDs get reused)."""
        raw = _read_proc(pid, "cmdline")
        if not raw:
            return False
        args = [part.decode(errors="replace") for part in raw.split(b"\0") if part]
        return bool(args) and Path(args[0]).name == self.binary and self.marker in args[1:]

    def pid(self) -> int | None:
        """The PID of the running daemon, or None (a stale PID file is ignored)."""
        pid = self._read_pid_file()
        if pid is None:
            return None
        if pid == self._child:
            # Our own unreaped child cannot have been reused, and right after the spawn its
            # /proc cmdline is briefly empty (exec still loading), so skip that check.
            if _alive(pid, reap=True):
                return pid
            self._child = None  # Reaped, so from now on the PID may be reused.
            return None
        return pid if _alive(pid, reap=False) and self._owns(pid) else None

    def is_running(self) -> bool:
        """Whether the daemon is alive."""
        return self.pid() is not None

    def start(self, argv: Sequence[str]) -> int:
        """Spawn argv in its own session with output to the console log; return its PID."""
        self.console_log.parent.mkdir(parents=True, exist_ok=True)
        with self.console_log.open("a", encoding="utf-8") as log:
            log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} starting: {' '.join(argv)}\n")
        # posix_spawn rather than subprocess.Popen: the daemon deliberately outlives the
        # handle, and a dropped Popen of a running child emits a ResourceWarning, which our
        # `filterwarnings = error` turns into test failures. The log file is opened in the
        # child only, so the parent has nothing to close.
        pid = os.posix_spawn(
            argv[0],
            list(argv),
            dict(os.environ),
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (
                    os.POSIX_SPAWN_OPEN,
                    1,
                    str(self.console_log),
                    os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                    0o644,
                ),
                (os.POSIX_SPAWN_DUP2, 1, 2),
            ],
            # Own session: Ctrl-C in the terminal must not hit the daemons.
            setsid=True,
            # Like Popen(restore_signals=True): Python ignores these, children should not.
            setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
        )
        self._child = pid
        tmp = self.pid_path.with_suffix(".pid.tmp")
        tmp.write_text(f"{pid}\n", encoding="ascii")
        tmp.replace(self.pid_path)
        logger.info("started %s (pid %d)", self.name, pid)
        return pid

    def _is_our_child(self, pid: int) -> bool:
        """Whether this process must reap pid (also when an earlier object spawned it)."""
        fields = _stat_fields(pid)
        return pid == self._child or (fields is not None and fields[1] == b"%d" % os.getpid())

    def _wait_gone(self, pid: int, timeout: float, *, reap: bool) -> bool:
        deadline = time.monotonic() + timeout
        while _alive(pid, reap=reap):
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_S)
        return True

    def _signal(self, pid: int, signum: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the daemon, SIGKILL it after `timeout` seconds; no-op if not running."""
        pid = self.pid()
        if pid is not None:
            reap = self._is_our_child(pid)  # Decided while pid is verified to be ours.
            self._signal(pid, signal.SIGTERM)
            if not self._wait_gone(pid, timeout, reap=reap):
                logger.warning(
                    "%s (pid %d) ignored SIGTERM for %.0fs, killing", self.name, pid, timeout
                )
                self._signal(pid, signal.SIGKILL)
                if not self._wait_gone(pid, 5.0, reap=reap):
                    raise ServiceError(f"{self.name} (pid {pid}) survived SIGKILL")
            logger.info("stopped %s (pid %d)", self.name, pid)
        self.pid_path.unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL the daemon (simulates a crash); no-op if not running."""
        pid = self.pid()
        if pid is not None:
            reap = self._is_our_child(pid)
            self._signal(pid, signal.SIGKILL)
            if not self._wait_gone(pid, 5.0, reap=reap):
                raise ServiceError(f"{self.name} (pid {pid}) survived SIGKILL")
            logger.info("killed %s (pid %d)", self.name, pid)
        self.pid_path.unlink(missing_ok=True)

    def logs_tail(self, lines: int = 20) -> str:
        """The tails of the console log and the daemon's own logs, for error messages."""
        parts = [
            f"--- {path}:\n{tail(path, lines)}" for path in (self.console_log, *self.extra_logs)
        ]
        return "\n".join(parts)

    def wait_until_ready(self, probe: Callable[[], bool], timeout: float) -> None:
        """Poll `probe` until it succeeds; ServiceError if the daemon dies or time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.is_running():
                raise ServiceError(f"{self.name} exited during start-up.\n{self.logs_tail()}")
            if probe():
                return
            if time.monotonic() >= deadline:
                raise ServiceError(
                    f"{self.name} did not become ready within {timeout:.0f}s.\n{self.logs_tail()}"
                )
            time.sleep(_POLL_S)
