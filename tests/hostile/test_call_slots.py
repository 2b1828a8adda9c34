"""Call slots by class: anonymous callers and accounts, however many, leave the others room.

Found by the threat model's review: public streaming calls (Health/Watch, reflection) held
slots of the server's limit without a credential, so ten of them locked every caller out; and
accounts that were not even registered could hold slots with slow uploads, because the
registration was checked only once their message had arrived.
"""

from __future__ import annotations

import time

from tests.hostile.conftest import (
    plaintext_client,
    plaintext_registry,
    production_env,
    timed_get_config,
)
from tests.hostile.raw_http2 import RawConnection, SlowStreams, grpc_frame
from tests.security import security
from tests.servers import server_process

MIB = 1024 * 1024
PERMISSION_DENIED, UNAVAILABLE = 7, 14
# 20 calls at once: 2 for public calls, 16 for accounts, the rest for services.
SETTINGS = {"ONNET_MAX_CONCURRENT_CALLS": "20", "ONNET_RECEIVE_TIMEOUT": "60"}


def _watches(port: int, count: int) -> RawConnection:
    """``count`` Health/Watch streams on one connection, each sent its request and held."""
    connection = RawConnection(port)
    for _ in range(count):
        stream = connection.open_stream("/grpc.health.v1.Health/Watch")
        connection.send(stream, grpc_frame(b""), end=True)
    connection.pump_until(lambda: len(connection.statuses()) >= count - 2)
    return connection


def test_anonymous_streams_cannot_take_every_slot() -> None:
    with server_process(production_env(**SETTINGS), secure=False) as server:
        with plaintext_client(server.target):  # registers the legitimate account
            pass
        watches = _watches(server.port, 30)
        try:
            answered = timed_get_config(server.target)
            with plaintext_registry(server.target) as registry:
                registry.register("carol", "+12025550103")
            refused = watches.statuses()
        finally:
            watches.close()
    assert answered < 2.0
    assert refused.count(UNAVAILABLE) >= 30 - 2  # only the public share is held


def test_strangers_and_colluding_accounts_leave_room_for_others() -> None:
    with server_process(production_env(**SETTINGS), secure=False) as server:
        with plaintext_registry(server.target) as registry:
            for number, name in enumerate(("mallory", "trudy", "eve")):
                registry.register(name, f"+1202555020{number}", discoverable=False)
        with plaintext_client(server.target):
            pass

        def uploads(account: str) -> SlowStreams:
            token = security().token(account).encode("ascii")
            streams = SlowStreams(
                server.port,
                "/onnet.v1.Discovery/Discover",
                1,
                12,
                4 * MIB,
                headers=[(b"authorization", b"Bearer " + token)],
            )
            streams.start()
            streams.push(0.3)
            return streams

        stranger = uploads("never-registered")
        colluders = [uploads(name) for name in ("mallory", "trudy", "eve")]
        try:
            deadline = time.monotonic() + 5
            while stranger.refused() < 12 and time.monotonic() < deadline:
                stranger.push(0.1)
            with plaintext_registry(server.target) as registry:
                started = time.monotonic()
                registry.register("carol", "+12025550103")  # a service still gets a slot
                service_took = time.monotonic() - started
            held = sum(12 - streams.refused() for streams in colluders)
            stranger_statuses = stranger.statuses()
        finally:
            for streams in (stranger, *colluders):
                streams.close()
    assert stranger_statuses == [PERMISSION_DENIED] * 12  # refused at the headers
    assert held <= 16  # accounts together hold at most their share
    assert service_took < 2.0
