"""One GET of a JWKS URL, as little trusting as the document is precious.

The document decides who may call onnet, so its fetch follows no redirect (a redirect could
lead an https URL to plain http), speaks only http and https, accepts only status 200, reads
at most a bounded number of bytes, and ends at its deadline however slowly the server
trickles its status line, its headers or its body: a watchdog shuts the connection's socket
at the deadline, which ends any read in progress. The URL is fetched directly, never through
a proxy. A failure says what happened and names the URL's host, never its credentials or
query.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
from urllib.parse import urlsplit

__all__ = ["FetchError", "fetch_document", "host_of"]

_CHUNK = 64 * 1024


class FetchError(Exception):
    """The document could not be fetched; the message names the host and the reason."""


def host_of(url: str) -> str:
    """``host[:port]`` of ``url``: what may be logged of it (no user, password or query)."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)


def _connection(url: str, timeout: float) -> tuple[http.client.HTTPConnection, str]:
    """A connection to ``url``'s host (not yet open), and the path to ask for."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchError(f"{host_of(url)}: unusable URL")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if parts.scheme == "https":
        context = ssl.create_default_context()
        return http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=timeout, context=context
        ), path
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout), path


def fetch_document(url: str, *, timeout: float, max_bytes: int) -> bytes:
    """The body of a GET of ``url``, whole within ``timeout`` seconds.

    Raises FetchError for any status but 200 (a redirect included), a body over
    ``max_bytes``, a transport error, or a fetch still unfinished at its deadline.
    """
    where = host_of(url)
    connection, path = _connection(url, timeout)
    expired = threading.Event()

    def shut() -> None:  # the deadline: whatever read is waiting ends now
        expired.set()
        sock = connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):  # closed already: nothing waits on it
                sock.shutdown(socket.SHUT_RDWR)

    watchdog = threading.Timer(timeout, shut)
    watchdog.daemon = True
    watchdog.start()
    try:
        connection.request("GET", path, headers={"Accept": "application/json"})
        answer = connection.getresponse()
        if answer.status != 200:
            redirect = " (redirects are not followed)" if 300 <= answer.status < 400 else ""
            raise FetchError(f"{where}: HTTP status {answer.status}{redirect}")
        body = bytearray()
        while chunk := answer.read1(_CHUNK):
            body += chunk
            if len(body) > max_bytes:
                raise FetchError(f"{where}: the answer is larger than {max_bytes} bytes")
        if expired.is_set():
            raise FetchError(f"{where}: no complete answer within {timeout:.0f} s")
        return bytes(body)
    except FetchError:
        raise
    except (OSError, http.client.HTTPException, ValueError) as error:
        if expired.is_set():
            raise FetchError(f"{where}: no complete answer within {timeout:.0f} s") from None
        reason = error.strerror if isinstance(error, OSError) and error.strerror else None
        raise FetchError(f"{where}: {reason or type(error).__name__}") from None
    finally:
        watchdog.cancel()
        connection.close()
