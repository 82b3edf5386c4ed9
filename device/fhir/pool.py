"""Scoring a large ``batch`` Bundle on several cores: long-lived worker processes.

Validating the incoming FHIR resources and the outgoing RiskAssessments is pure-Python CPU
work (≈ 1.5 ms a patient), so one process scores a 1 000-patient batch in ≈ 1.5 s whatever the
cores. :class:`ScoringPool` keeps ``size`` worker subprocesses (``python -m
device.fhir.pool_worker``), splits a batch into one contiguous chunk per worker, sends the chunks
concurrently (a thread per chunk, a lock per worker) as length-prefixed JSON — no pickle — and
reassembles the results in order. Each worker runs :func:`device.fhir.service.assess_entries`,
the code path of an in-process batch, so the response is the same whichever way it was computed.

Nothing hangs: every exchange has a deadline (:data:`BASE_TIMEOUT` + :data:`PER_ENTRY` per
entry). A worker that dies, misses the deadline or answers outside the protocol is killed and
restarted, and its chunk is scored in the server process instead (correctness first), with a
log line naming the worker. Batches under ``min_batch`` entries are scored in-process.
"""

from __future__ import annotations

import atexit
import logging
import os
import selectors
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from http import HTTPStatus
from pathlib import Path
from types import TracebackType
from typing import Any

from fastapi.concurrency import run_in_threadpool

from ..model import PrognosticModel
from ..registry import canonical_sha256
from . import pool_worker as wire
from . import service
from .errors import FhirError

log = logging.getLogger("fedprog.fhir.pool")

#: batches with fewer entries are scored in the server process (the IPC would cost more than it saves)
MIN_BATCH = 200
#: a worker has this long, plus PER_ENTRY seconds per entry of its chunk, to take the chunk and answer
BASE_TIMEOUT = 60.0
PER_ENTRY = 0.05
#: how long a closing worker may take to exit after end of input before it is killed
EXIT_TIMEOUT = 5.0
#: the command of a worker process
WORKER_COMMAND = (sys.executable, "-m", "device.fhir.pool_worker")
_READ = 1 << 20
_ROOT = str(Path(__file__).resolve().parents[2])  # the folder holding the ``device`` package


def artifact_json(model: PrognosticModel) -> dict[str, Any] | None:
    """The artifact JSON a worker loads ``model`` from — the object the model was read from, hashing
    to ``model.sha256`` as :func:`device.model.load_model` will verify — or ``None`` if it would not."""
    art = model.to_artifact()
    return art if canonical_sha256(art) == model.sha256 else None


class WorkerError(Exception):
    """A worker that exited, missed its deadline or broke the protocol (it is restarted)."""


class _Worker:
    """One worker subprocess and the frames exchanged with it; used by one thread at a time."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.lock = threading.Lock()
        self.proc = self._spawn()
        self.ready = False
        self.model: str | None = None  # sha256 of the model the worker holds

    @staticmethod
    def _spawn() -> subprocess.Popen[bytes]:
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([_ROOT, path] if path else [_ROOT])}
        proc = subprocess.Popen(list(WORKER_COMMAND), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                bufsize=0, env=env)
        assert proc.stdin is not None and proc.stdout is not None
        os.set_blocking(proc.stdin.fileno(), False)
        os.set_blocking(proc.stdout.fileno(), False)
        return proc

    @property
    def pid(self) -> int:
        return self.proc.pid

    def __str__(self) -> str:
        return f"scoring worker {self.index} (pid {self.pid})"

    def restart(self) -> None:
        self.stop(kill=True)
        self.proc, self.ready, self.model = self._spawn(), False, None

    def stop(self, kill: bool = False) -> None:
        """End the process (end of input, or SIGKILL), reap it and close its pipes."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if kill:
            self.proc.kill()
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            log.warning("%s did not exit within %.0f s of end of input; killed", self, EXIT_TIMEOUT)
            self.proc.kill()
            self.proc.wait(timeout=EXIT_TIMEOUT)
        self.proc.stdout.close()

    def handshake(self, deadline: float) -> None:
        """Wait for the worker's ready message (once per process)."""
        if not self.ready:
            hello = wire.Ready.model_validate(self._receive(deadline))
            if hello.ready != self.pid:
                raise wire.ProtocolError(f"ready message names pid {hello.ready}")
            self.ready = True

    def exchange(self, request: dict[str, Any], deadline: float) -> wire.Reply:
        """Send one request and return the validated reply, all before ``deadline`` (monotonic)."""
        self.handshake(deadline)
        self._send(wire.encode_frame(request), deadline)
        return wire.Reply.model_validate(self._receive(deadline))

    def _wait(self, sel: selectors.BaseSelector, deadline: float, what: str) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not sel.select(remaining):
            raise WorkerError(f"{self} did not {what} before its deadline")

    def _send(self, data: bytes, deadline: float) -> None:
        assert self.proc.stdin is not None
        fd, view = self.proc.stdin.fileno(), memoryview(data)
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_WRITE)
            while view:
                self._wait(sel, deadline, "take its chunk")
                try:
                    view = view[os.write(fd, view):]
                except BlockingIOError:
                    continue
                except BrokenPipeError:
                    raise WorkerError(f"{self} has exited (status {self.proc.poll()})") from None

    def _read(self, n: int, deadline: float) -> bytes:
        assert self.proc.stdout is not None
        fd, parts, got = self.proc.stdout.fileno(), [], 0
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while got < n:
                self._wait(sel, deadline, "answer")
                try:
                    part = os.read(fd, min(n - got, _READ))
                except BlockingIOError:
                    continue
                if not part:
                    raise WorkerError(f"{self} closed its output (exit status {self.proc.poll()})")
                parts.append(part)
                got += len(part)
        return b"".join(parts)

    def _receive(self, deadline: float) -> Any:
        return wire.decode_body(self._read(wire.decode_length(self._read(4, deadline)), deadline))


def _entry(item: wire.Scored | wire.Refused) -> service.EntryResult:
    if isinstance(item, wire.Scored):
        return service.EntryResult(resource=item.resource, patient=item.patient)
    e = item.error
    HTTPStatus(e.status)  # a known status (ValueError otherwise), as the response will name it
    return service.EntryResult(error=FhirError(e.status, e.code, e.diagnostics, e.expression))


class ChunkFailed(Exception):
    """A worker answered that it could not score a chunk as a whole (it stays in service)."""


class ScoringPool:
    """``size`` scoring worker processes for large batches (default: one per CPU; 0: none).

    Use as a context manager, or call :meth:`close`; the workers are also closed at interpreter
    exit, and exit by themselves when the server process goes away (end of input).
    """

    def __init__(self, size: int | None = None, *, min_batch: int = MIN_BATCH) -> None:
        self.size = (os.cpu_count() or 1) if size is None else size
        if self.size < 0:
            raise ValueError(f"a scoring pool cannot have {self.size} workers")
        self.min_batch = min_batch
        self._closed = False
        self._artifacts: dict[str, dict[str, Any] | None] = {}
        self._workers = [_Worker(i) for i in range(self.size)]
        self._threads = ThreadPoolExecutor(max_workers=max(self.size, 1), thread_name_prefix="fedprog-pool")
        atexit.register(self.close)

    def __enter__(self) -> ScoringPool:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def pids(self) -> list[int]:
        """Process ids of the current workers."""
        return [w.pid for w in self._workers]

    def wait_ready(self, timeout: float = BASE_TIMEOUT) -> None:
        """Wait until every worker has warmed up, so that the first batch, and the first requests,
        do not share the CPU with the workers' start; a worker that fails to is restarted."""
        deadline = time.monotonic() + timeout
        for w in self._workers:
            if not w.lock.acquire(timeout=max(deadline - time.monotonic(), 0.0)):
                continue  # busy with a batch: it is ready
            try:
                if not self._closed:
                    w.handshake(deadline)
            except (WorkerError, ValueError, OSError) as exc:
                log.warning("%s did not start (%s); restarting it", w, str(exc).splitlines()[0])
                self._replace(w)
            finally:
                w.lock.release()

    def close(self) -> None:
        """Let chunks in flight finish (each has a deadline), then end every worker and reap it."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        self._threads.shutdown(wait=True, cancel_futures=True)
        for w in self._workers:
            if w.lock.acquire(timeout=EXIT_TIMEOUT):
                try:
                    w.stop()
                finally:
                    w.lock.release()
            else:  # still held (a wait_ready): end it now; its holder sees end of output and stops
                log.warning("%s still busy at close; killed", w)
                w.proc.kill()

    def _replace(self, w: _Worker) -> None:
        """Kill a failed worker and start another (unless the pool is closing)."""
        if self._closed:
            w.stop(kill=True)
        else:
            w.restart()

    def assess_batch(self, model: PrognosticModel, bundle: dict[str, Any], limit: int = 10_000
                     ) -> service.BatchResult:
        """:func:`device.fhir.service.assess_batch`, a large batch spread over the workers."""
        resources = [service.entry_resource(e) for e in service.batch_entries(bundle, limit)]
        artifact = self._artifact(model)
        if self._closed or not self._workers or len(resources) < max(self.min_batch, 1) or artifact is None:
            return service.batch_result(service.assess_entries(model, resources))
        occurrence = service.now_iso()
        bounds = self._chunks(len(resources))
        deadline = time.monotonic() + BASE_TIMEOUT + PER_ENTRY * max(b - a for a, b in bounds)
        message = {"protocol": wire.PROTOCOL, "sha256": model.sha256, "occurrence": occurrence}
        futures = [self._submit(w, {**message, "entries": resources[a:b], "start": a}, artifact, deadline)
                   for w, (a, b) in zip(self._workers, bounds, strict=False)]
        results: list[service.EntryResult] = []
        for fut, (a, b) in zip(futures, bounds, strict=True):
            got = self._outcome(fut, deadline)
            results += service.assess_entries(model, resources[a:b], a, occurrence) if got is None else got
        return service.batch_result(results)

    def _chunks(self, n: int) -> list[tuple[int, int]]:
        k = min(len(self._workers), n)
        cuts = [n * i // k for i in range(k + 1)]
        return list(zip(cuts, cuts[1:], strict=False))

    def _artifact(self, model: PrognosticModel) -> dict[str, Any] | None:
        if model.sha256 not in self._artifacts:
            art = artifact_json(model)
            if art is None:
                log.warning("model %s: its artifact does not re-serialise to the same sha256; "
                            "batches are scored in-process", model.ref)
            self._artifacts[model.sha256] = art
        return self._artifacts[model.sha256]

    def _submit(self, w: _Worker, request: dict[str, Any], artifact: dict[str, Any], deadline: float
                ) -> Future[list[service.EntryResult] | None] | None:
        try:
            return self._threads.submit(self._run, w, request, artifact, deadline)
        except RuntimeError:  # closed meanwhile
            return None

    @staticmethod
    def _outcome(fut: Future[list[service.EntryResult] | None] | None, deadline: float
                 ) -> list[service.EntryResult] | None:
        if fut is None:
            return None
        try:
            return fut.result(timeout=max(deadline - time.monotonic(), 0.0) + EXIT_TIMEOUT)
        except TimeoutError:
            log.warning("a scoring chunk did not finish by its deadline; scoring it in-process")
        except Exception:  # a defect in the pool itself: still answer, correctly
            log.exception("a scoring chunk failed in the pool; scoring it in-process")
        return None

    def _run(self, w: _Worker, request: dict[str, Any], artifact: dict[str, Any], deadline: float
             ) -> list[service.EntryResult] | None:
        """One chunk on worker ``w``; ``None`` when it has to be scored in-process instead."""
        if not w.lock.acquire(timeout=max(deadline - time.monotonic(), 0.0)):
            log.warning("%s stayed busy until the deadline; its chunk is scored in-process", w)
            return None
        try:
            return self._exchange(w, request, artifact, deadline)
        finally:
            w.lock.release()

    def _exchange(self, w: _Worker, request: dict[str, Any], artifact: dict[str, Any], deadline: float
                  ) -> list[service.EntryResult] | None:
        if self._closed:
            return None
        n, sha = len(request["entries"]), request["sha256"]
        try:
            if w.proc.poll() is not None:
                log.warning("%s had exited (status %s); restarting it", w, w.proc.returncode)
                self._replace(w)
            loads = w.model != sha
            w.model = None
            reply = w.exchange({**request, "artifact": artifact if loads else None}, deadline)
            if reply.results is None:
                raise ChunkFailed(reply.failed)
            if len(reply.results) != n:
                raise wire.ProtocolError(f"{len(reply.results)} results for {n} entries")
            w.model = sha
            return [_entry(item) for item in reply.results]
        except ChunkFailed as exc:
            log.warning("%s could not score its %d entries (%s); scoring them in-process", w, n, exc)
        except (WorkerError, ValueError, OSError) as exc:  # incl. ProtocolError and ValidationError
            log.warning("%s failed (%s); restarting it and scoring its %d entries in-process",
                        w, str(exc).splitlines()[0], n)
            self._replace(w)
        return None


class Scorer:
    """Where the CPU work of a request runs: never on the event loop, so that no request — whatever
    its units, dates or size — stalls the others. One patient (``$predict-risk`` or a CDS Hooks
    call, both through :class:`device.fhir.deps.RiskService`) in a worker thread: a few
    milliseconds, less than a hop to a process would cost; a batch in a worker thread that hands
    a large one to the scoring processes of ``pool`` when there is one
    (:meth:`ScoringPool.assess_batch`). The one way every scoring route runs its work."""

    def __init__(self, pool: ScoringPool | None = None) -> None:
        self.pool = pool

    async def assess(self, model: PrognosticModel, body: dict[str, Any], only_patient: str | None = None
                     ) -> service.Prediction:
        """:func:`device.fhir.service.assess` off the event loop."""
        return await run_in_threadpool(service.assess, model, body, only_patient)

    async def assess_batch(self, model: PrognosticModel, bundle: dict[str, Any]) -> service.BatchResult:
        """:func:`device.fhir.service.assess_batch` (or the pool's) off the event loop."""
        assess = service.assess_batch if self.pool is None else self.pool.assess_batch
        return await run_in_threadpool(assess, model, bundle)
