"""Background jobs: transfers, MIDI playing, conversions and exports on a thread pool.

A request only queues its job and returns; the page polls the job's state. The
pool's threads run the library (torch releases the GIL in its kernels), so the
event loop keeps serving pages while jobs run, and jobs beyond the pool's size
wait their turn instead of failing.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from ..errors import UserError

log = logging.getLogger("torchddsp.app")
KEEP_JOBS = 20  # a session's older finished jobs are deleted as new ones start
QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"


@dataclass
class JobOutput:
    """What a job leaves: files in its folder (the page may fetch only these) and a line."""

    files: list[str]
    summary: str = ""
    names: dict[str, str] = field(default_factory=dict)  # a file's name for downloads

    def download_name(self, file: str) -> str:
        return self.names.get(file, file)


# The work of a job: given its empty folder, fill it and say what it made.
Work = Callable[[Path], JobOutput]


@dataclass
class Job:
    id: str
    session_id: str
    kind: str
    folder: Path
    status: str = QUEUED
    message: str = ""  # the one sentence the page shows when the job failed
    output: JobOutput = field(default_factory=lambda: JobOutput([]))

    @property
    def finished(self) -> bool:
        return self.status in (DONE, FAILED)

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "message": self.message,
            "summary": self.output.summary,
            "files": {name: f"/api/jobs/{self.id}/{quote(name)}" for name in self.output.files},
        }


class JobRunner:
    """Runs jobs on ``workers`` threads; each job belongs to one session."""

    def __init__(self, workers: int):
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="torchddsp-job")
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def submit(self, session_id: str, session_folder: Path, kind: str, work: Work) -> Job:
        job_id = secrets.token_hex(8)
        job = Job(job_id, session_id, kind, session_folder / "jobs" / job_id)
        job.folder.mkdir(parents=True)
        with self._lock:
            self._jobs[job_id] = job
            self._trim(session_id)
        self._pool.submit(self._run, job, work)
        return job

    def get(self, session_id: str, job_id: str) -> Job | None:
        """The job, if it belongs to ``session_id``: another session's jobs stay hidden."""
        job = self._jobs.get(job_id)
        return job if job is not None and job.session_id == session_id else None

    def busy(self, session_id: str) -> bool:
        with self._lock:
            return any(j.session_id == session_id and not j.finished for j in self._jobs.values())

    def forget(self, session_ids: list[str]) -> None:
        """Drop the records of removed sessions (their folders went with them)."""
        with self._lock:
            for job_id in [k for k, j in self._jobs.items() if j.session_id in session_ids]:
                del self._jobs[job_id]

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _trim(self, session_id: str) -> None:
        finished = [j for j in self._jobs.values() if j.session_id == session_id and j.finished]
        for job in finished[: max(0, len(finished) - KEEP_JOBS)]:
            del self._jobs[job.id]
            shutil.rmtree(job.folder, ignore_errors=True)

    @staticmethod
    def _run(job: Job, work: Work) -> None:
        job.status = RUNNING
        try:
            job.output = work(job.folder)
            job.status = DONE
        except UserError as err:  # the user's input: its message is written for people
            job.message, job.status = one_line(str(err)), FAILED
        except Exception:  # a bug: the page gets a sentence, the log the traceback
            log.exception("%s job %s failed", job.kind, job.id)
            job.message = f"The {job.kind} failed on an unexpected error; see the server's log."
            job.status = FAILED


def one_line(message: str) -> str:
    return " ".join(message.split())
