"""Local Aer jobs in a worker process, so that a timeout can really stop them.

Qiskit Aer keeps the GIL while it simulates: a job run in a thread of this
process cannot be waited for with a timeout (``Thread.join(timeout)`` does not
return until Aer releases the GIL, i.e. until the job is done) and cannot be
cancelled.  A noisy 10-qubit ``StatePrep`` circuit on ``fake:torino`` runs for
minutes, so ``job_timeout=20`` used to raise only when the job had finished.

:class:`AerWorker` runs the jobs of the ``fake:`` devices in one long-lived
child process (``python -c``, no :mod:`multiprocessing` re-import of the
caller's ``__main__``) and talks to it over two pipes.  :meth:`AerWorker.submit`
sends the transpiled circuits, the shots, the simulator options and the noise
model, and returns a :class:`WorkerJob` whose ``result()`` waits for the Aer
``Result`` and whose ``cancel()`` kills the child: the CPU is free at once,
and the next job starts a fresh child (about a second or two, once).

The counts are those of an in-process run with the same seed and options
(the child builds ``AerSimulator(**options)`` and runs the same circuits with
the same ``noise_model`` run option).

Examples
--------
>>> from qiskit import QuantumCircuit
>>> qc = QuantumCircuit(1, 1)
>>> _ = qc.x(0); _ = qc.measure(0, 0)
>>> job = shared_worker().submit([qc], shots=20, options={"seed_simulator": 1})
>>> job.result().get_counts(0)
{'1': 20}
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from typing import Any

__all__ = ["AerWorker", "WorkerJob", "WorkerDied", "shared_worker"]

# The child: read (circuits, shots, options, run_options) from one pipe, run them on Aer, send
# ("ok", Result) or ("error", text) on the other.  It imports qiskit_aer only (not qtnn).
_CHILD = """
import sys
from multiprocessing.connection import Connection
rd, wr = Connection(int(sys.argv[1]), writable=False), Connection(int(sys.argv[2]), readable=False)
from qiskit_aer import AerSimulator
while True:
    try:
        circuits, shots, options, run_options = rd.recv()
    except EOFError:
        break
    try:
        result = AerSimulator(**options).run(circuits, shots=shots, **run_options).result()
        wr.send(("ok", result))
    except BaseException as exc:
        wr.send(("error", f"{type(exc).__name__}: {exc}"))
"""


class WorkerDied(RuntimeError):
    """The worker process ended without an answer (killed, crashed, out of memory); tried again."""


class WorkerJob:
    """One job in the worker: ``result()`` waits for it, ``cancel()`` kills the worker."""

    def __init__(self, worker: AerWorker, generation: int) -> None:
        self._worker = worker
        self._generation = generation

    def result(self, timeout: float | None = None) -> Any:
        """The Aer ``Result``; :class:`WorkerDied` if the worker ended without one."""
        return self._worker._receive(self._generation, timeout)

    def cancel(self) -> None:
        """Kill the worker (the job with it); the next job starts a new one."""
        self._worker.stop(self._generation)


class AerWorker:
    """A child process that runs Aer jobs one at a time (see the module docstring)."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._send: Connection | None = None
        self._recv: Connection | None = None
        self._generation = 0
        self._lock = threading.RLock()

    def _start(self) -> None:
        p_read, c_write = os.pipe()      # child -> parent
        c_read, p_write = os.pipe()      # parent -> child
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(c_read), str(c_write)], pass_fds=(c_read, c_write),
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, close_fds=True)
        os.close(c_read)
        os.close(c_write)
        self._send = Connection(p_write, readable=False)
        self._recv = Connection(p_read, writable=False)
        self._generation += 1

    @property
    def alive(self) -> bool:
        """Whether the child process is running."""
        return self._proc is not None and self._proc.poll() is None

    def submit(self, circuits: list, shots: int, options: dict[str, Any],
               run_options: dict[str, Any] | None = None) -> WorkerJob:
        """Send a job to the worker (started if needed); returns at once."""
        with self._lock:
            if not self.alive:
                self.stop()
                self._start()
            assert self._send is not None
            self._send.send((list(circuits), int(shots), dict(options), dict(run_options or {})))
            return WorkerJob(self, self._generation)

    def _receive(self, generation: int, timeout: float | None) -> Any:
        conn = self._recv
        if generation != self._generation or conn is None:
            raise WorkerDied("the Aer worker was stopped before this job finished")
        try:
            if timeout is not None and not conn.poll(timeout):
                raise TimeoutError(f"no result from the Aer worker within {timeout:g} s")
            status, payload = conn.recv()
        except (EOFError, OSError) as exc:
            code = self._proc.poll() if self._proc is not None else None
            raise WorkerDied(f"the Aer worker ended without a result (exit code {code})") from exc
        if status != "ok":
            raise RuntimeError(f"Aer job failed in the worker: {payload}")
        return payload

    def stop(self, generation: int | None = None) -> None:
        """Kill the child (if ``generation`` is given: only if it is still that child)."""
        with self._lock:
            if generation is not None and generation != self._generation:
                return
            proc, self._proc = self._proc, None
            if proc is not None and proc.poll() is None:
                proc.kill()          # first, so that a reader blocked on the pipe sees its end
                proc.wait()
            for conn in (self._send, self._recv):
                if conn is not None:
                    conn.close()
            self._send = self._recv = None


_SHARED: AerWorker | None = None
_SHARED_LOCK = threading.Lock()


def shared_worker() -> AerWorker:
    """The process-wide :class:`AerWorker` (created on first use)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            import atexit

            _SHARED = AerWorker()
            atexit.register(_SHARED.stop)      # a job still running when Python exits is killed
        return _SHARED
