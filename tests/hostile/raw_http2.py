"""A hostile HTTP/2 client: what a real attacker sends, not what a well-behaved gRPC stub sends.

gRPC's own client always finishes its messages and sends well-formed headers, so it cannot
play the attacks the hostile suite needs: streams that announce a large message and never
finish it, header values that are not valid UTF-8, metadata spelled in odd ways. This module
speaks HTTP/2 directly (the `h2` library parses and frames; the bytes are ours) on plaintext
loopback connections.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.exceptions

Header = tuple[bytes, bytes]

GRPC_HEADERS: tuple[Header, ...] = (
    (b":method", b"POST"),
    (b":scheme", b"http"),
    (b"content-type", b"application/grpc"),
    (b"te", b"trailers"),
)


def grpc_frame(message: bytes) -> bytes:
    """One gRPC message on the wire: not compressed, 4-byte big-endian length, the bytes."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


@dataclass
class RawConnection:
    """One HTTP/2 connection to 127.0.0.1:``port``; header validation is off on purpose."""

    port: int
    sock: socket.socket = field(init=False)
    h2: h2.connection.H2Connection = field(init=False)
    closed_streams: set[int] = field(default_factory=set)
    trailers: dict[int, dict[bytes, bytes]] = field(default_factory=dict)
    dead: bool = False

    def __post_init__(self) -> None:
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        config = h2.config.H2Configuration(
            client_side=True, validate_outbound_headers=False, normalize_outbound_headers=False
        )
        self.h2 = h2.connection.H2Connection(config)
        self.h2.initiate_connection()
        self._flush()
        self.pump(0.2)

    def _flush(self) -> None:
        out = self.h2.data_to_send()
        if out and not self.dead:
            try:
                self.sock.sendall(out)
            except OSError:
                self.dead = True

    def open_stream(self, path: str, extra_headers: Sequence[Header] = ()) -> int:
        """Send a call's headers; returns the stream id."""
        stream_id: int = self.h2.get_next_available_stream_id()
        headers = [
            *GRPC_HEADERS[:2],
            (b":path", path.encode("ascii")),
            (b":authority", f"127.0.0.1:{self.port}".encode("ascii")),
            *GRPC_HEADERS[2:],
            *extra_headers,
        ]
        self.h2.send_headers(stream_id, headers)
        self._flush()
        return stream_id

    def send(self, stream_id: int, data: bytes, *, end: bool = False) -> int:
        """Send as much of ``data`` as flow control allows now; returns the bytes sent."""
        if stream_id in self.closed_streams or self.dead:
            return 0
        try:
            room = min(self.h2.local_flow_control_window(stream_id), len(data))
            sent = 0
            while sent < room:
                chunk = data[sent : sent + min(room - sent, self.h2.max_outbound_frame_size)]
                last = end and sent + len(chunk) == len(data)
                self.h2.send_data(stream_id, chunk, end_stream=last)
                sent += len(chunk)
            if end and not data:
                self.h2.end_stream(stream_id)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            self.closed_streams.add(stream_id)
            return 0
        self._flush()
        return sent

    def pump(self, timeout: float = 0.0) -> None:
        """Read what the server sent (window updates, answers, resets), waiting up to timeout."""
        while not self.dead:
            ready, _, _ = select.select([self.sock], [], [], timeout)
            if not ready:
                return
            try:
                data = self.sock.recv(1 << 20)
            except OSError:
                data = b""
            if not data:
                self.dead = True
                return
            for event in self.h2.receive_data(data):
                if isinstance(event, h2.events.TrailersReceived):
                    self.trailers[event.stream_id] = dict(event.headers)
                elif isinstance(event, h2.events.ResponseReceived):
                    headers = dict(event.headers)
                    if b"grpc-status" in headers:  # a trailers-only answer
                        self.trailers[event.stream_id] = headers
                if isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                    self.closed_streams.add(event.stream_id)
            self._flush()
            timeout = 0.0

    def pump_until(self, done: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Read what arrives until ``done()`` holds (True) or ``timeout`` passes (False)."""
        deadline = time.monotonic() + timeout
        while not done():
            if self.dead or time.monotonic() > deadline:
                return done()
            self.pump(0.05)
        return True

    def statuses(self) -> list[int]:
        """The grpc-status of every stream the server has answered."""
        return [
            int(trailers[b"grpc-status"])
            for trailers in self.trailers.values()
            if b"grpc-status" in trailers
        ]

    def close(self) -> None:
        self.sock.close()
        self.dead = True


def call_status(
    port: int, path: str, headers: Iterable[Header], message: bytes, timeout: float = 10
) -> tuple[int, str]:
    """Make one whole call with raw headers; returns (grpc-status, grpc-message)."""
    connection = RawConnection(port)
    try:
        stream = connection.open_stream(path, list(headers))
        connection.send(stream, grpc_frame(message), end=True)
        deadline = time.monotonic() + timeout
        while stream not in connection.trailers and time.monotonic() < deadline:
            if connection.dead:
                raise ConnectionError("the server closed the connection")
            connection.pump(0.05)
        trailers = connection.trailers.get(stream)
        if trailers is None:
            raise TimeoutError("no answer")
        return int(trailers[b"grpc-status"]), trailers.get(b"grpc-message", b"").decode()
    finally:
        connection.close()


@dataclass
class SlowStreams:
    """Streams that announce a message of ``size`` bytes and send all of it but 64 bytes."""

    port: int
    path: str
    connections: int
    streams_per_connection: int
    size: int
    headers: Sequence[Header] = ()
    _open: list[RawConnection] = field(default_factory=list)
    _sent: dict[tuple[int, int], int] = field(default_factory=dict)

    def start(self) -> None:
        for _ in range(self.connections):
            connection = RawConnection(self.port)
            self._open.append(connection)
            for _ in range(self.streams_per_connection):
                stream = connection.open_stream(self.path, self.headers)
                self._sent[(len(self._open) - 1, stream)] = 0

    def push(self, seconds: float) -> None:
        """Keep sending for ``seconds`` wherever the server lets us; never finish a message."""
        goal = self.size - 64
        header = b"\x00" + self.size.to_bytes(4, "big")
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            moved = False
            for (number, stream), sent in list(self._sent.items()):
                connection = self._open[number]
                if sent >= goal or connection.dead:
                    continue
                start = header if sent == 0 else b""
                chunk = start + bytes(min(1 << 20, goal - sent) - len(start))
                done = connection.send(stream, chunk)
                self._sent[(number, stream)] = sent + done
                moved = moved or done > 0
            for connection in self._open:
                connection.pump(0.0 if moved else 0.01)

    @property
    def bytes_sent(self) -> int:
        return sum(self._sent.values())

    def refused(self) -> int:
        """Streams the server ended (answered, reset, or whose connection it closed)."""
        return sum(
            1
            for number, stream in self._sent
            if stream in self._open[number].closed_streams or self._open[number].dead
        )

    def statuses(self) -> list[int]:
        """The grpc-status of every stream the server answered."""
        return [status for connection in self._open for status in connection.statuses()]

    def close(self) -> None:
        for connection in self._open:
            connection.close()
