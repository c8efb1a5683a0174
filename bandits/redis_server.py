"""A throw-away local ``redis-server`` (Debian's binary) for tests and benchmarks: a free loopback port,
a temporary directory, no persistence (``--save '' --appendonly no``)."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalRedisServer:
    """Start with :meth:`start` (or ``with``), stop with :meth:`stop`; :meth:`start` again reuses the port.

    :param directory: working directory (log, no data files); a new temporary one by default.
    :raises FileNotFoundError: no ``redis-server`` on PATH.
    """

    def __init__(self, directory: str | Path | None = None):
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            raise FileNotFoundError("redis-server is not installed (Debian: apt-get install redis-server)")
        self.directory = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="redis-"))
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> "LocalRedisServer":
        """Start the server and wait until it answers PING."""
        self.directory.mkdir(parents=True, exist_ok=True)
        log = self.directory / "redis.log"
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        with open(log, "a") as out:
            self.process = subprocess.Popen(args + ["--dir", str(self.directory)], stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                if redis.Redis(port=self.port, socket_timeout=0.5).ping():
                    return self
            except redis.ConnectionError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer PING on port {self.port}; log:\n{log.read_text()}")

    def stop(self) -> None:
        """Stop the server (resuming it first if it was paused)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            self.process.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP: the server holds connections but answers nothing (a hung or partitioned Redis)."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def client(self, **kwargs) -> redis.Redis:
        return redis.Redis(port=self.port, **kwargs)

    def __enter__(self) -> "LocalRedisServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
