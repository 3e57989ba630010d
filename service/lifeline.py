"""The serving worker stops when the server that started it is gone.

BentoML starts its serving worker in a process group of its own, so when the server is killed
outright (``kill -9`` of its process group, or the OOM killer taking BentoML's arbiter) the
worker lives on, re-parented. Seen here: the orphan kept answering on the old port, and a server
started again on that port came up beside it, both listening. Neither BentoML nor circus watches
for this, and Linux's parent-death signal (``prctl``) is neither portable nor inherited by the
processes circus forks, so a thread watches the parent's pid and, once it changes, sends this
process SIGTERM: BentoML then stops as on any stop (a running job checkpoints and is marked
interrupted).
"""

from __future__ import annotations

import os
import signal
import threading
import time

POLL_S = 1.0


def stop_when_orphaned(poll_s: float = POLL_S) -> threading.Thread:
    """Start a daemon thread that SIGTERMs this process once its parent process has exited."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, name="ukd-lifeline", daemon=True)
    thread.start()
    return thread
