"""Start `ukd-compress serve` on a free 127.0.0.1 port and stop it: for tests and benchmarks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server_process(*args: str, env: dict[str, str] | None = None, timeout: float = 180,
                   program: str = "ukd_compress", log_path: str | None = None
                   ) -> Iterator[tuple[subprocess.Popen, str]]:
    """`ukd-compress serve ARGS` (or `bentoml serve ARGS`) until /readyz answers; yields the
    process and its URL, then stops it (SIGTERM) unless it stopped already. Its output goes to
    ``log_path`` (default: a temporary file)."""
    port = free_port()
    log = (open(log_path, "wb") if log_path else
           tempfile.NamedTemporaryFile(prefix="ukd-serve-", suffix=".log", delete=False))
    process = subprocess.Popen(
        [sys.executable, "-m", program, "serve", *args, "--port", str(port)],
        env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process, log.name, timeout)
        yield process, url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(90)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.close()


@contextmanager
def running_server(*args: str, **kwargs) -> Iterator[str]:
    """:func:`server_process`, yielding its URL alone."""
    with server_process(*args, **kwargs) as (_, url):
        yield url


def _wait_ready(url: str, process: subprocess.Popen, log: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode}:\n"
                               + open(log).read()[-3000:])
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"the server was not ready in {timeout} s:\n" + open(log).read()[-3000:])
