"""One GET of a JWKS URL, as little trusting as the document is precious.

The document decides who may call onnet, so its fetch follows no redirect (a redirect could
lead an https URL to plain http, or to ftp), speaks only http and https, ends within its
deadline however slowly the server trickles, and reads at most a bounded number of bytes.
A failure says what happened and names the URL's host, never its credentials or query.
"""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

__all__ = ["FetchError", "fetch_document", "host_of"]

_CHUNK = 64 * 1024


class FetchError(Exception):
    """The document could not be fetched; the message names the host and the reason."""


def host_of(url: str) -> str:
    """``host[:port]`` of ``url``: what may be logged of it (no user, password or query)."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)


def _opener() -> urllib.request.OpenerDirector:
    """An opener of http and https only, with the environment's proxies, and no redirects."""
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(),
        urllib.request.HTTPHandler(),
        urllib.request.HTTPSHandler(),
        urllib.request.HTTPDefaultErrorHandler(),  # a status >= 300 becomes an HTTPError
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


def fetch_document(url: str, *, timeout: float, max_bytes: int) -> bytes:
    """The body of a GET of ``url``, whole within about ``timeout`` seconds.

    Raises FetchError for a redirect or any other status but 200, a body over
    ``max_bytes``, a transport error, or a fetch still unfinished at its deadline.
    """
    where = host_of(url)
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310 - opener speaks http(s) only
    body = bytearray()
    try:
        # The socket timeout bounds each read; the deadline, checked between reads, bounds
        # the whole (a server sending a byte now and then never trips a read's timeout).
        with _opener().open(request, timeout=timeout) as answer:
            while chunk := answer.read1(_CHUNK):
                body += chunk
                if len(body) > max_bytes:
                    raise FetchError(f"{where}: the answer is larger than {max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise FetchError(f"{where}: no complete answer within {timeout:.0f} s")
    except urllib.error.HTTPError as error:
        redirect = " (redirects are not followed)" if 300 <= error.code < 400 else ""
        raise FetchError(f"{where}: HTTP status {error.code}{redirect}") from None
    except urllib.error.URLError as error:
        reason = error.reason  # an OSError, or text that may quote the URL: not shown
        text = reason.strerror if isinstance(reason, OSError) else "unusable URL"
        raise FetchError(f"{where}: {text or type(reason).__name__}") from None
    except (OSError, http.client.HTTPException, ValueError) as error:
        raise FetchError(f"{where}: {type(error).__name__}") from None
    return bytes(body)
