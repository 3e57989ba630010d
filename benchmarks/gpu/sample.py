"""A wall-clock sampling profiler for one command: where its time goes, imports and waits included.

  python benchmarks/gpu/sample.py OUTFILE -m ukd_compress distill ...   (or: OUTFILE script.py ARGS)

Every 5 ms a thread reads the main thread's stack; when the command ends, OUTFILE gets the lines
sampled most (self time) and the functions on the stack most often (cumulative). cProfile would
add a cost to every Python call, which is most of a training loop's host time, and py-spy is not
on the GPU machine.
"""

import atexit
import collections
import os
import runpy
import sys
import threading
import time

INTERVAL_S = 0.005


def where(frame) -> str:
    code = frame.f_code
    return f"{os.path.basename(code.co_filename)}:{code.co_name}:{code.co_firstlineno}"


class Sampler:
    def __init__(self, thread_id: int):
        self.thread_id, self.started = thread_id, time.perf_counter()
        self.lines, self.functions = collections.Counter(), collections.Counter()
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(INTERVAL_S):
            frame = sys._current_frames().get(self.thread_id)
            if frame is None:
                continue
            self.lines[f"{where(frame)}@{frame.f_lineno}"] += 1
            on_stack = set()
            while frame is not None:
                on_stack.add(where(frame))
                frame = frame.f_back
            self.functions.update(on_stack)

    def write(self, path: str) -> None:
        self.stopped.set()
        total = sum(self.lines.values()) or 1
        parts = [f"wall {time.perf_counter() - self.started:.1f}s, {total} samples "
                 f"({1000 * INTERVAL_S:.0f} ms apart)", "", "## self (line)"]
        parts += [f"{100 * n / total:6.1f}%  {k}" for k, n in self.lines.most_common(45)]
        parts += ["", "## cumulative"]
        parts += [f"{100 * n / total:6.1f}%  {k}" for k, n in self.functions.most_common(90)]
        with open(path, "w") as out:
            out.write("\n".join(parts) + "\n")


def main() -> None:
    out, command = sys.argv[1], sys.argv[2:]
    sampler = Sampler(threading.get_ident())
    threading.Thread(target=sampler.run, daemon=True).start()
    atexit.register(sampler.write, out)
    if command[0] == "-m":
        sys.argv = command[1:]
        runpy.run_module(command[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = command
        runpy.run_path(command[0], run_name="__main__")


if __name__ == "__main__":
    main()
