"""Compression jobs: each one a `ukd-compress distill` worker process, its record a JSON file.

Why not BentoML's ``@bentoml.task``: a task runs inside the server process, so a crash or an
out-of-memory in training would take the server down, and its result store forgets unfinished
work on restart. Here a job is a child process (a crash marks the job failed; the server keeps
serving), one at a time, and its record lives under the models root, so a restarted server finds
unfinished jobs, marks them interrupted, and ``resume`` continues them with the core's
``--resume``.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, ConfigDict, Field

from ukd_compress.errors import UserError
from ukd_compress.files import write_json
from ukd_compress.methods import METHODS
from ukd_compress.recipe import MIN_VOCAB, Recipe
from ukd_compress.run_folder import RunFolder

UNFINISHED = ("queued", "running")
JOB_ID = re.compile(r"^[0-9a-f]{12}$")
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# What a model field may name when no folder under the root has it: an alias or student spec
# (`minilm-l6`, `teacher:2`, `teacher:0,5`, `bilstm`) or a hub id (`name`, `org/name`).
HUB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:,-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")
PRINTABLE = r"^[^\x00-\x1f\x7f]+$"  # no NUL or other control characters
STOP_TIMEOUT_S = 60


class JobError(Exception):
    """A request the job API refuses: HTTP status, message, and the field at fault."""

    def __init__(self, status: int, message: str, field: str | None = None):
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


class JobSpec(BaseModel):
    """What to compress: the `ukd-compress distill` options a job may set."""

    model_config = ConfigDict(extra="forbid")

    teacher: str = Field("minilm-l6", min_length=1, max_length=200, pattern=PRINTABLE,
                         description="alias, hub name, or folder under the models root")
    student: str = Field("teacher:2", min_length=1, max_length=200, pattern=PRINTABLE,
                         description="teacher:K, teacher:I,J, bilstm, cnn, hub name, or folder "
                                     "under the root")
    task: str = Field("sst2", min_length=1, max_length=20)
    method: str = Field("ukd", pattern="^(" + "|".join(map(re.escape, METHODS)) + ")$",
                        description=", ".join(METHODS))
    name: str | None = Field(None, pattern=RUN_NAME.pattern,
                             description="run folder name under <root>/runs")
    epochs: int | None = Field(None, ge=1, le=100)
    max_steps: int | None = Field(None, ge=1)
    max_train_samples: int | None = Field(None, ge=1)
    max_eval_samples: int | None = Field(None, ge=1)
    batch_size: int | None = Field(None, ge=1, le=4096)
    seed: int | None = None
    student_vocab: int | None = Field(None, ge=MIN_VOCAB, le=1_000_000,
                                      description="a vocabulary of its own for a teacher:K, "
                                                  "bilstm or cnn student")
    export: bool = Field(False, description="export to ONNX (with int8) when training ends")


def confine(root: Path, value: str, field: str) -> str:
    """A folder under ``root`` as an absolute path, or an alias / spec / hub name left as is.

    A value is a path when its first part exists under the root (a folder or a link): then it
    must exist and resolve, links followed, inside the root. Otherwise it is passed on only if
    it looks like a hub name. Called at submission and again when the job starts, since the
    folders under the root may change in between."""
    parts = PurePosixPath(value).parts
    if value.startswith(("/", "~")) or ".." in parts:
        raise JobError(400, f"{field}: give a path relative to the models root, without '..'",
                       field)
    if not os.path.lexists(root / parts[0]):
        if not HUB_NAME.match(value):
            raise JobError(400, f"{field}: {value!r} is neither a folder under the models root "
                                "nor a hub name (org/name)", field)
        return value
    local = (root / value).resolve()
    if not local.is_relative_to(root):
        raise JobError(400, f"{field}: {value} leads outside the models root", field)
    if not local.exists():
        raise JobError(400, f"{field}: no folder {value} under the models root", field)
    return str(local)


def run_name(spec: JobSpec, job_id: str) -> str:
    """The run folder's name: the user's, or task-student-method-id within RUN_NAME's 64."""
    if spec.name:
        return spec.name
    student = re.sub(r"[^A-Za-z0-9_.-]", "-", spec.student.rsplit("/", 1)[-1]).strip("-.")
    head, tail = f"{spec.task}-", f"-{spec.method.replace('+', '-')}-{job_id}"
    return head + student[:64 - len(head) - len(tail)] + tail


class Jobs:
    """The job records under ``<root>/jobs`` and the one worker that runs them in order."""

    def __init__(self, root: Path, data_dir: str | None = None):
        self.root = Path(root).resolve()
        self.records, self.runs = self.root / "jobs", self.root / "runs"
        self.records.mkdir(parents=True, exist_ok=True)
        self.runs.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir
        self._lock = threading.Lock()
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._process: subprocess.Popen | None = None
        self._stopping = False
        self.recover()
        self._worker = threading.Thread(target=self._work, name="ukd-jobs", daemon=True)
        self._worker.start()

    # --- records ---------------------------------------------------------------------------
    def _path(self, job_id: str) -> Path:
        if not JOB_ID.match(job_id) or not (self.records / f"{job_id}.json").is_file():
            raise JobError(404, f"no job {job_id!r}", "job_id")
        return self.records / f"{job_id}.json"

    def _read(self, job_id: str) -> dict:
        return json.loads(self._path(job_id).read_text())

    def _write(self, record: dict) -> dict:
        write_json(self.records / f"{record['id']}.json", record)
        return record

    def _update(self, job_id: str, **changes) -> dict:
        with self._lock:
            return self._write({**self._read(job_id), **changes})

    def recover(self) -> None:
        """Mark what a previous server left unfinished as interrupted; stop its stray workers."""
        for path in self.records.glob("*.json"):
            record = json.loads(path.read_text())
            if record["state"] not in UNFINISHED:
                continue
            _stop_stray_worker(record.get("pid"))
            self._write({**record, "state": "interrupted", "finished": time.time(),
                         "error": "the server stopped before the job finished; "
                                  f"POST /jobs/{record['id']}/resume continues it"})

    # --- the API ---------------------------------------------------------------------------
    def submit(self, spec: JobSpec) -> dict:
        job_id = uuid.uuid4().hex[:12]
        name = run_name(spec, job_id)
        for field in ("teacher", "student"):
            confine(self.root, getattr(spec, field), field)
        try:  # the student's kind and its vocabulary, as the CLI checks them
            Recipe().replace("student", spec=spec.student, vocab_size=spec.student_vocab).validate()
        except UserError as exc:
            raise JobError(400, str(exc), "student_vocab") from None
        with self._lock:
            taken = {r["run_dir"] for r in self.list() if r["state"] in UNFINISHED}
            run = RunFolder(self.runs / name)
            on_disk = run.path.exists() or run.partial().path.exists()
            if on_disk or f"runs/{name}" in taken:
                raise JobError(409, f"run folder runs/{name} already exists or is queued", "name")
            self._write({"id": job_id, "state": "queued",
                         "spec": spec.model_copy(update={"name": name}).model_dump(),
                         "run_dir": f"runs/{name}", "created": time.time(),
                         "resume": False, "log": f"jobs/{job_id}.log"})
        self._queue.put(job_id)
        return self.status(job_id)

    def resume(self, job_id: str) -> dict:
        record = self._read(job_id)
        if record["state"] not in ("interrupted", "failed"):
            raise JobError(409, f"job {job_id} is {record['state']}; only interrupted or failed "
                                "jobs resume", "job_id")
        run = RunFolder(self.root / record["run_dir"])
        self._update(job_id, state="queued", error=None, resume=run.partial().is_resumable)
        self._queue.put(job_id)
        return self.status(job_id)

    def status(self, job_id: str) -> dict:
        """The record, with training progress while running and the report when done."""
        record = self._read(job_id)
        run = RunFolder(self.root / record["run_dir"])
        if record["state"] == "running":
            record["progress"] = self._progress(run, self.root / record["log"])
        if record["state"] == "done" and run.report_file.is_file():
            record["report"] = _summary(run.report())
        return record

    @staticmethod
    def _progress(run: RunFolder, log: Path) -> dict:
        """Training's status.json while the run is unfinished; once the run folder has its final
        name (the worker is exporting or exiting), that status marked finishing."""
        for folder, finishing in ((run.partial(), False), (run, True)):
            if (status := folder.status()) is not None:
                return {**status, "phase": "finishing"} if finishing else status
        return {"phase": "preparing (data, teacher, pseudo classifiers)",
                "output": _last_output(log)}

    def list(self) -> list[dict]:
        records = [json.loads(p.read_text()) for p in self.records.glob("*.json")]
        return sorted(records, key=lambda r: r["created"])

    @property
    def alive(self) -> bool:
        """Whether the worker thread still takes jobs."""
        return self._worker.is_alive()

    def shutdown(self) -> None:
        """Stop the running worker (it saves a checkpoint) and mark unfinished jobs interrupted."""
        self._stopping = True
        process = self._process
        if process is not None and process.poll() is None:
            _stop_group(process.pid)
        self._queue.put(None)
        self._worker.join(STOP_TIMEOUT_S)
        self.recover()

    # --- the worker ------------------------------------------------------------------------
    def _work(self) -> None:
        while (job_id := self._queue.get()) is not None:
            if self._stopping:
                continue
            try:
                self._run(job_id)
            except Exception as exc:  # noqa: BLE001 - one bad job must not stop the queue
                self._process = None
                reason = exc.message if isinstance(exc, JobError) else f"internal error: {exc!r}"
                try:
                    self._update(job_id, state="failed", finished=time.time(), pid=None,
                                 error=reason)
                except Exception:  # noqa: BLE001 - the record itself is unreadable
                    pass

    def command(self, record: dict) -> list[str]:
        """The worker's command line, its teacher and student confined to the root again."""
        spec = JobSpec.model_construct(**record["spec"])  # validated when it was submitted
        run = RunFolder(self.root / record["run_dir"])
        args = [sys.executable, "-m", "ukd_compress", "distill"]
        if record["resume"]:
            args += ["--resume", str(run.partial().path)]
        else:
            args += ["--output", str(run.path),
                     "--teacher", confine(self.root, spec.teacher, "teacher"),
                     "--student", confine(self.root, spec.student, "student"),
                     "--task", spec.task, "--method", spec.method]
            for option in ("epochs", "max_steps", "max_train_samples", "max_eval_samples",
                           "batch_size", "seed", "student_vocab"):
                if (value := getattr(spec, option)) is not None:
                    args += [f"--{option.replace('_', '-')}", str(value)]
        return args + (["--export"] if spec.export else [])

    def _run(self, job_id: str) -> None:
        record = self._read(job_id)
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
        if self.data_dir:
            env["UKD_DATA_DIR"] = self.data_dir
        log = self.root / record["log"]
        with log.open("ab") as out:
            # its own process group: stopping the job stops whatever the worker started
            self._process = subprocess.Popen(self.command(record), cwd=self.root, env=env,
                                             stdout=out, stderr=subprocess.STDOUT,
                                             start_new_session=True)
            self._update(job_id, state="running", started=time.time(), pid=self._process.pid)
            code = self._process.wait()
        self._process = None
        if code == 0:
            self._update(job_id, state="done", finished=time.time(), pid=None)
        elif self._stopping or code == 130:
            self._update(job_id, state="interrupted", finished=time.time(), pid=None,
                         error=f"stopped; POST /jobs/{job_id}/resume continues it")
        else:
            self._update(job_id, state="failed", finished=time.time(), pid=None,
                         error=_failure_reason(log, code))


def _failure_reason(log: Path, code: int) -> str:
    """The CLI's own one-line error if it gave one, else the exit code and the log's last line."""
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    reason = next((line for line in reversed(lines)
                   if line.startswith(("error:", "check failed:"))), None)
    return reason or f"worker exited with code {code}: {lines[-1] if lines else 'no output'}"


def _last_output(log: Path) -> str:
    """The worker's latest line of output (progress bars redraw with carriage returns)."""
    with log.open("rb") as f:
        f.seek(max(0, log.stat().st_size - 4096))
        tail = f.read().decode(errors="replace")
    pieces = [p.strip() for p in re.split(r"[\r\n]", tail) if p.strip()]
    return pieces[-1] if pieces else ""


def _stop_stray_worker(pid: int | None) -> None:
    """Stop a worker a killed server left behind, and wait for it: two never write one run."""
    if not pid:
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return
    if b"ukd_compress" in cmdline:
        _stop_group(pid)


def _stop_group(pid: int, timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM the worker's process group (the worker checkpoints and exits), wait until the
    worker is gone, SIGKILL the group after ``timeout``."""
    try:
        group = os.getpgid(pid)
        os.killpg(group, signal.SIGTERM)
    except OSError:
        return
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        try:
            os.killpg(group, signal.SIGKILL)
        except OSError:
            pass


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited but not yet reaped, counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _summary(report: dict) -> dict:
    keep = ("task", "teacher", "student", "method", "wall_seconds", "export")
    summary = {k: report[k] for k in keep if k in report}
    summary.get("teacher", {}).pop("pseudo_classifier_metrics", None)
    return summary
