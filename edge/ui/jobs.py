"""Long work the tablet starts and watches (backup, stock-take import, first sync): each job reports
`done` of `total` as it goes, and the page shows a progress bar fed by server-sent events.

Jobs live in memory on the app (a restart forgets them; what they wrote is in the database or on
disk, so nothing is lost with them)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Literal

import msgspec

Progress = Callable[[int, int], None]


class Job(msgspec.Struct):
    job_id: str
    kind: str
    label: str  # already in the starter's language
    owner: str  # user_id of who started it
    done: int = 0
    total: int = 0
    state: Literal["running", "done", "failed"] = "running"
    message: str = ""
    link: str = ""  # where to go when it is done
    started_at: float = 0.0
    finished_at: float | None = None

    @property
    def percent(self) -> int:
        if self.state == "done":
            return 100
        return 0 if self.total <= 0 else min(100, self.done * 100 // self.total)


class JobBoard:
    def __init__(self, keep: int = 50) -> None:
        self.jobs: dict[str, Job] = {}
        self.keep = keep
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, kind: str, label: str, owner: str, work: Callable[[Progress], Awaitable[str]],
              link: str = "") -> Job:
        job = Job(job_id=str(uuid.uuid4()), kind=kind, label=label, owner=owner, link=link, started_at=time.time())
        self.jobs[job.job_id] = job
        for old in sorted(self.jobs.values(), key=lambda j: j.started_at)[:-self.keep]:
            if old.state != "running":
                del self.jobs[old.job_id]

        def progress(done: int, total: int) -> None:
            job.done, job.total = done, total

        async def run() -> None:
            try:
                job.message = await work(progress)
                job.state = "done"
            except Exception as exc:  # noqa: BLE001 - a failed job reports why; the hub goes on
                job.state, job.message = "failed", str(exc) or type(exc).__name__
            finally:
                job.finished_at = time.time()

        task = asyncio.create_task(run(), name=f"job-{kind}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def latest(self, kind: str) -> Job | None:
        found = [job for job in self.jobs.values() if job.kind == kind]
        return max(found, key=lambda j: j.started_at) if found else None

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
