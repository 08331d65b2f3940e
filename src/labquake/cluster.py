"""Where parallel work runs: this machine, or a Dask ``distributed`` cluster (``--scheduler``).

Dask is imported only when a scheduler is given, so commands start fast without it.
"""

from __future__ import annotations

import os

SCHEDULER_ENV = "LABQUAKE_SCHEDULER"


def scheduler_address(given: str | None) -> str | None:
    """``--scheduler ADDRESS``, else the LABQUAKE_SCHEDULER environment variable, else None (local)."""
    address = given if given is not None else os.environ.get(SCHEDULER_ENV)
    return address.strip() or None if address else None
