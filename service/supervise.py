"""``ukd-compress serve`` runs BentoML's server as a child process, in a home of its own, and
drains it before it stops.

A home of its own: BentoML keeps the /metrics of a server's workers in
``$BENTOML_HOME/prometheus_multiproc_dir`` and empties that folder when a server starts, so two
servers on one home overwrote each other's metrics. A server of a run folder needs nothing else
from the home (no model store), so each gets a temporary one.

Draining: on SIGTERM BentoML's server (circus, then uvicorn) closes its listening socket and its
idle connections at once, so a connection accepted but not yet read, or still in the kernel's
backlog, is reset: 23 of a burst of 124 requests here got no answer. On SIGTERM (or SIGINT) the
supervisor marks the server as draining (``/readyz`` answers 503, so a load balancer stops
sending), keeps serving until no client connection has been open for a moment (at most
``drain_timeout`` seconds; an idle keep-alive connection counts as open), and only then passes
SIGTERM on.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psutil

QUIET_S = 0.5  # no client connection for this long: the burst is over


def open_connections(process: psutil.Process, port: int) -> int:
    """Established TCP connections on ``port`` held by ``process`` or its children."""
    count = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            count += sum(c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == port
                         for c in member.net_connections(kind="tcp"))
        except psutil.Error:  # a worker that just exited
            pass
    return count


def wait_until_idle(process: psutil.Process, port: int, timeout: float) -> None:
    quiet_since = time.monotonic()
    deadline = quiet_since + timeout
    while time.monotonic() < deadline:
        if open_connections(process, port):
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= QUIET_S:
            return
        time.sleep(0.05)


def supervise(argv: list[str], env: dict[str, str], port: int, drain_timeout: float) -> int:
    """Run the server ``argv`` in a temporary BentoML home; on SIGTERM or SIGINT drain it, then
    stop it. Returns its exit code."""
    home = Path(tempfile.mkdtemp(prefix="ukd-serve-"))
    drain_file = home / "draining"
    child = subprocess.Popen(argv, env={**env, "UKD_DRAIN_FILE": str(drain_file),
                                        "BENTOML_HOME": str(home / "bentoml")})
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    while child.poll() is None:
        if stop.wait(0.2):
            drain_file.touch()
            wait_until_idle(psutil.Process(child.pid), port, drain_timeout)
            child.send_signal(signal.SIGTERM)
            break
    code = child.wait()
    shutil.rmtree(home, ignore_errors=True)
    return code
