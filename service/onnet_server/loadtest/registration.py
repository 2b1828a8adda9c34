"""Register the load test's population through the Registry, as the account service would."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc

import onnet
from onnet_server.loadtest.population import import_rows

__all__ = ["Registered", "register_population"]

_ROWS_PER_BATCH = 2000


@dataclass(frozen=True)
class Registered:
    """What the import did."""

    imported: int
    rejected: int
    seconds: float


def register_population(
    address: str,
    users: int,
    *,
    credentials: grpc.ChannelCredentials | None = None,
    service_token: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> Registered:
    """Register population users 0 to ``users - 1`` (``loadtest-NNNNNNN``), all discoverable.

    Needs a service credential (``service_token``, or a trusted client certificate in
    ``credentials``) except on a development server. Registering again is harmless: each
    user simply keeps its number. ``progress`` gets the rows answered so far. Raises the
    SDK's errors (``onnet.ServiceError``) when the Registry refuses or cannot be reached.
    """
    started = time.monotonic()

    def answered(result: onnet.ImportResult, sent: int) -> None:
        if progress is not None:
            progress(result.imported + len(result.rejected))

    with onnet.RegistryClient(address, credentials=credentials, token=service_token) as client:
        result = client.import_users(
            import_rows(users), batch_size=_ROWS_PER_BATCH, progress=answered
        )
    return Registered(result.imported, len(result.rejected), time.monotonic() - started)
