"""Where parallel work runs: this machine, or a Dask ``distributed`` cluster (``--scheduler``).

Every stage states its parallel work as ``joblib.Parallel`` calls. Inside ``joblib_backend(address)``
those calls run on the Dask cluster at ``address`` through joblib's own Dask backend (the field's
engine: Dask schedules, retries tasks of a lost worker, balances the load); without an address they
run as before (local processes). The same code, the same results::

    with cluster.joblib_backend(scheduler) as threads:  # the cluster's worker threads, 0 locally
        results = Parallel(n_jobs=-1 if threads else jobs, batch_size=1)(delayed(task)(args) for args in work)

Tasks should receive file names, offsets and seeds, never large arrays: each one is pickled and
shipped to a worker, which opens the memory-mapped cache itself. With workers on other machines
every path a task reads or writes must be on a filesystem they share.

Dask is imported only when a scheduler is given, so commands start fast without it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from labquake.util import LabquakeError, log

SCHEDULER_ENV = "LABQUAKE_SCHEDULER"
TIMEOUT_ENV = "LABQUAKE_SCHEDULER_TIMEOUT"  # seconds to wait for the scheduler to answer
DEFAULT_TIMEOUT = 20.0


def scheduler_address(given: str | None) -> str | None:
    """``--scheduler ADDRESS``, else the LABQUAKE_SCHEDULER environment variable, else None (local)."""
    address = given if given is not None else os.environ.get(SCHEDULER_ENV)
    return address.strip() or None if address else None


def connect_timeout() -> float:
    """Seconds to wait for a scheduler: LABQUAKE_SCHEDULER_TIMEOUT, else 20."""
    raw = os.environ.get(TIMEOUT_ENV, "")
    try:
        value = float(raw) if raw.strip() else DEFAULT_TIMEOUT
    except ValueError:
        raise LabquakeError(f"{TIMEOUT_ENV}={raw!r}: not a number of seconds") from None
    if value <= 0:
        raise LabquakeError(f"{TIMEOUT_ENV}={raw!r}: must be positive")
    return value


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

    reused = _active_client(scheduler)
    if reused is not None:
        with joblib.parallel_config(backend="dask", client=reused):
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
        with joblib.parallel_config(backend="dask", client=client):
            yield threads
    finally:
        client.close()


def _threads(client) -> int:
    """Worker threads of the cluster now."""
    return int(sum(client.nthreads().values()))
