"""Where parallel work runs: this machine, or a Dask ``distributed`` cluster (``--scheduler``).

Every stage states its parallel work as ``joblib.Parallel`` calls. Inside ``joblib_backend(address)``
those calls run on the Dask cluster at ``address`` through joblib's Dask backend (the field's
engine: Dask schedules, retries tasks of a lost worker, balances the load); without an address they
run as before (local processes). The same code, the same results::

    with cluster.joblib_backend(scheduler) as threads:  # the cluster's worker threads, 0 locally
        results = Parallel(n_jobs=-1 if threads else jobs, batch_size=1)(delayed(task)(args) for args in work)

The backend is joblib's ``dask`` one with a fix: a task that keeps killing its workers
(``KilledWorker``) raises in ``Parallel`` instead of hanging it (see ``_backend_class``);
``cluster_failure`` tells such failures of the cluster from a task's own errors.

Tasks should receive file names, offsets and seeds, never large arrays: each one is pickled and
shipped to a worker, which opens the memory-mapped cache itself. With workers on other machines
every path a task reads or writes must be on a filesystem they share.

Dask is imported only when a scheduler is given, so commands start fast without it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager

from labquake.util import LabquakeError, log

SCHEDULER_ENV = "LABQUAKE_SCHEDULER"  # runtime.scheduler (config.RUNTIME_ENV)
TIMEOUT_ENV = "LABQUAKE_SCHEDULER_TIMEOUT"  # runtime.scheduler_timeout


def scheduler_address(given: str | None, configured: str | None = None) -> str | None:
    """``--scheduler ADDRESS``, else runtime.scheduler (or LABQUAKE_SCHEDULER), else None (local)."""
    address = given if given is not None else configured
    return address.strip() or None if address else None


def connect_timeout() -> float:
    """Seconds to wait for a scheduler: runtime.scheduler_timeout as the environment sets it."""
    from labquake.config import load_config

    return load_config().runtime.scheduler_timeout


BACKEND = "labquake-dask"  # joblib's Dask backend with the fix of _backend_class


@functools.lru_cache(maxsize=1)
def _backend_class():
    """joblib's Dask backend (``joblib._dask.DaskDistributedBackend``), with one fix.

    joblib 1.6 learns a task's outcome from a callback that its Dask backend calls only for futures
    that finished: a future that failed as a whole (``KilledWorker``: the task killed more workers
    than ``distributed.scheduler.allowed-failures``; a lost scheduler) never reaches joblib, and
    ``Parallel`` waits for it forever. Here the callback also gets the failure, so ``Parallel``
    raises it as for any task's error. Everything else is joblib's.
    """
    import asyncio

    from joblib._dask import DaskDistributedBackend

    class Backend(DaskDistributedBackend):
        async def _collect(self):
            while self._continue:
                async for future, result in self.waiting_futures:
                    cf_future = self._results.pop(future)
                    callback = self._callbacks.pop(future)
                    if future.status == "error":
                        _, exc, _ = result
                        cf_future.set_exception(exc)
                        callback(exc)  # joblib re-raises an exception given as the result
                    else:
                        cf_future.set_result(result)
                        callback(result)
                await asyncio.sleep(0.01)

    return Backend


def _active_client(address: str):
    """The Dask client of an enclosing ``joblib_backend`` for the same address, else None."""
    from joblib._dask import DaskDistributedBackend
    from joblib.parallel import get_active_backend

    backend, _ = get_active_backend()
    if isinstance(backend, DaskDistributedBackend) and backend.client.status == "running":
        if backend.client.scheduler is not None and backend.client.scheduler.address == _normalise(address):
            return backend.client
    return None


def _normalise(address: str) -> str:
    return address if "://" in address else f"tcp://{address}"


@contextmanager
def joblib_backend(scheduler: str | None, timeout: float | None = None) -> Iterator[int]:
    """joblib.Parallel inside runs on the Dask cluster at ``scheduler`` (yields its number of worker threads), or locally (yields 0) when None.

    Connects with ``distributed.Client(scheduler, timeout=...)`` (``timeout``: seconds, default
    ``connect_timeout()``); a scheduler that does not answer is a ``LabquakeError`` of one line.
    It waits as long for a first worker. Nested uses for the same address reuse the open client, so a caller may wrap a loop of stages in
    one connection. The client is closed on leaving; the cluster itself is left running.
    """
    if scheduler is None:
        yield 0
        return
    try:
        import joblib
        from distributed import Client
    except ImportError as exc:  # pragma: no cover - dask is a pinned requirement
        raise LabquakeError(f"--scheduler {scheduler}: dask/distributed are not installed ({exc}); run `make install`") from None

    joblib.register_parallel_backend(BACKEND, _backend_class())
    reused = _active_client(scheduler)
    if reused is not None:
        with joblib.parallel_config(backend=BACKEND, client=reused):
            yield _threads(reused)
        return
    wait = connect_timeout() if timeout is None else timeout
    try:
        client = Client(_normalise(scheduler), timeout=wait, set_as_default=False)
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise LabquakeError(f"--scheduler {scheduler}: no Dask scheduler answers ({reason})") from None
    try:
        try:
            client.wait_for_workers(1, timeout=wait)
        except (OSError, TimeoutError) as exc:
            raise LabquakeError(f"--scheduler {scheduler}: no Dask worker joined the scheduler in {wait:g} s ({type(exc).__name__})") from None
        threads = _threads(client)
        log.info(f"dask: {scheduler}, {len(client.nthreads())} workers, {threads} threads")
        with joblib.parallel_config(backend=BACKEND, client=client):
            yield threads
    finally:
        client.close()


def cluster_failure(exc: BaseException) -> bool:
    """Whether an exception out of ``joblib.Parallel`` on a Dask cluster is the cluster's failure, not the task's own.

    A task that killed its worker more often than ``distributed.scheduler.allowed-failures``
    (``KilledWorker``), a lost connection to the scheduler, cancelled futures. A stage turns these
    into a one-line ``LabquakeError`` that says a rerun resumes; a task's own exceptions stay as they are.
    """
    import sys
    from concurrent.futures import CancelledError

    if "distributed" not in sys.modules:
        return False
    from distributed.comm.core import CommClosedError
    from distributed.scheduler import KilledWorker

    return isinstance(exc, (KilledWorker, CommClosedError, CancelledError))


def one_line(exc: BaseException, limit: int = 200) -> str:
    """An exception as one short line: its type and its first words."""
    text = " ".join(str(exc).split())
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _threads(client) -> int:
    """Worker threads of the cluster now."""
    return int(sum(client.nthreads().values()))
