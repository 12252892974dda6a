"""Long work for the MCP server: each piece runs once in a worker thread, however many calls wait
for it; each waiting call hears its progress; it stops when every call that waited has gone.

A tool that needs a scan or a corpus pass asks the board for it under a key naming the work (the
layers and settings, the corpus...). A second call with the same key joins the running work
instead of starting it again. The work itself is a plain function of two callbacks, ``report``
(progress, from the worker thread) and ``cancelled`` (polled by the engine between chunks), so the
engine never learns that an agent is on the other side.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
from anyio.abc import TaskGroup

from engine.errors import ScanCancelled

# What a waiting call is told: (done, total or None, a few words).
Progress = tuple[float, float | None, str]
Report = Callable[[float, float | None, str], None]
Work = Callable[[Report, Callable[[], bool]], Any]
Listener = Callable[[float, float | None, str], Awaitable[None]]


@dataclass
class Job:
    """One piece of running work and the calls waiting on it."""

    key: Hashable
    title: str
    started: float = field(default_factory=time.time)
    progress: Progress = (0.0, None, "starting")
    waiters: int = 0
    stop: threading.Event = field(default_factory=threading.Event)  # polled by the worker
    finished: anyio.Event = field(default_factory=anyio.Event)
    changed: anyio.Event = field(default_factory=anyio.Event)
    result: Any = None
    error: BaseException | None = None

    def moved(self, progress: Progress) -> None:
        """New progress (on the event loop): wake every waiting call."""
        self.progress = progress
        self.changed.set()
        self.changed = anyio.Event()

    def describe(self) -> dict:
        done, total, words = self.progress
        return {
            "work": self.title,
            "done": done,
            "total": total,
            "message": words,
            "waiting_calls": self.waiters,
            "stopping": self.stop.is_set(),
            "seconds": round(time.time() - self.started, 1),
        }


class WorkBoard:
    """The server's running work, keyed; its tasks live in the server's own task group, so that a
    call that goes away never takes shared work down with it."""

    def __init__(self, tasks: TaskGroup):
        self._tasks = tasks
        self._jobs: dict[Hashable, Job] = {}
        self.idle = anyio.Event()  # set whenever nothing runs
        self.idle.set()

    def stop_all(self) -> None:
        """Tell every running piece of work to stop (the server is closing)."""
        for job in self._jobs.values():
            job.stop.set()

    def running(self) -> list[dict]:
        return [job.describe() for job in self._jobs.values()]

    async def run(self, key: Hashable, title: str, work: Work, listener: Listener | None = None) -> Any:
        """The work's result, started now or joined if the same key is running; progress to
        ``listener``. When this call is cancelled and no other call waits, the work is told to
        stop (it stops at its next check) and leaves the board when its thread has returned."""
        job = self._jobs.get(key)
        if job is None or job.stop.is_set():  # a stopping job is not joined: it is ending
            job = self._start(key, title, work)
        job.waiters += 1
        try:
            return await self._wait(job, listener)
        finally:
            job.waiters -= 1
            if job.waiters == 0 and not job.finished.is_set():
                job.stop.set()

    def _start(self, key: Hashable, title: str, work: Work) -> Job:
        job = Job(key, title)
        self._jobs[key] = job
        self.idle = anyio.Event()
        self._tasks.start_soon(self._drive, job, work)
        return job

    async def _wait(self, job: Job, listener: Listener | None) -> Any:
        told: Progress | None = None
        while not job.finished.is_set():
            if listener is not None and job.progress != told:
                told = job.progress
                await listener(*told)
            changed = job.changed
            async with anyio.create_task_group() as either:  # whichever comes first

                async def until(event: anyio.Event) -> None:
                    await event.wait()
                    either.cancel_scope.cancel()

                either.start_soon(until, changed)
                either.start_soon(until, job.finished)
        if listener is not None and job.progress != told:  # the last word before it finished
            await listener(*job.progress)
        if job.error is not None:
            raise job.error
        return job.result

    async def _drive(self, job: Job, work: Work) -> None:
        def report(done: float, total: float | None, words: str) -> None:  # in the worker thread
            try:
                anyio.from_thread.run_sync(job.moved, (float(done), total, words))
            except RuntimeError:  # the event loop is closing: nobody is left to tell
                pass

        try:
            job.result = await anyio.to_thread.run_sync(work, report, job.stop.is_set)
        except ScanCancelled as stopped:
            job.error = stopped
        except Exception as error:  # handed to every waiting call
            job.error = error
        finally:
            if self._jobs.get(job.key) is job:
                del self._jobs[job.key]
            job.finished.set()
            if not self._jobs:
                self.idle.set()
