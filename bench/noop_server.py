"""The framework ceiling for Discover: a bare grpc.aio server that answers without working.

It serves /onnet.v1.Discovery/Discover with a generic handler that has no request
deserializer (the request's bytes are never parsed) and no response serializer: every call
gets the same pre-serialized answer, read from a file at start (bench_h2load.py gives it
onnet's own answer to the benchmark's request, so both servers send the same bytes back).
Same grpcio, same process model as ``onnet serve`` (one asyncio event loop in one process),
the same transport settings (message limits, streams per connection, concurrent calls), and
no interceptors.

Run: ``python -m bench.noop_server --listen 127.0.0.1:0 --response FILE``; it prints
``noop serving on 127.0.0.1:PORT`` on standard output once it serves, and stops on SIGTERM
or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

import grpc
from grpc import aio

__all__ = ["METHOD", "SERVICE", "main", "serve"]

SERVICE = "onnet.v1.Discovery"
METHOD = "Discover"

# onnet serve's transport settings (onnet_server.server and its defaults): the ceiling
# differs from onnet only by the work onnet does.
_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
_STREAMS_PER_CONNECTION = 100
_MAX_CONCURRENT_CALLS = 100


async def serve(listen: str, answer: bytes) -> None:
    """Serve ``answer`` to every Discover call on ``listen`` until SIGTERM or SIGINT."""

    async def discover(request: bytes, context: aio.ServicerContext[bytes, bytes]) -> bytes:
        return answer

    server = aio.server(
        maximum_concurrent_rpcs=_MAX_CONCURRENT_CALLS,
        options=[
            ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
            ("grpc.max_concurrent_streams", _STREAMS_PER_CONNECTION),
            ("grpc.so_reuseport", 0),
        ],
    )
    # No request deserializer, no response serializer: bytes in, bytes out.
    handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(discover)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {METHOD: handler}),)
    )
    port = server.add_insecure_port(listen)
    if port == 0:
        raise OSError(f"cannot listen on {listen}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    host = listen.rsplit(":", 1)[0]
    print(f"noop serving on {host}:{port}", flush=True)
    await stop.wait()
    await server.stop(1.0)


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and serve."""
    parser = argparse.ArgumentParser(prog="python -m bench.noop_server", description=__doc__)
    parser.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (loopback)")
    parser.add_argument(
        "--response", type=Path, required=True, help="the serialized answer to every call"
    )
    args = parser.parse_args(argv)
    if not args.listen.startswith("127.0.0.1:"):
        parser.error("the no-op server listens on 127.0.0.1 only")
    asyncio.run(serve(args.listen, args.response.read_bytes()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
