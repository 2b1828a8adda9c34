"""What a client's flow asks for: one RPC of the calls layer at a time, typed.

A flow writes ``response = yield from ask(DISCOVER, request)``; the client's driver makes
the call with its calls layer (blocking or asyncio: the same method names) and sends the
response back, or raises the call's exception at that line.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from google.protobuf.message import Message

from onnet.v1 import discovery_pb2, registry_pb2

__all__ = [
    "BLIND_EVALUATE",
    "BLOCK",
    "DISCOVER",
    "FETCH_BUCKETS",
    "GET_CONFIG",
    "LOOKUP",
    "REGISTER",
    "SCREEN",
    "UNBLOCK",
    "UNREGISTER",
    "Call",
    "Flow",
    "Rpc",
    "ask",
]

_In = TypeVar("_In", bound=Message)
_Out = TypeVar("_Out", bound=Message)
_Result = TypeVar("_Result")


@dataclass(frozen=True)
class Rpc(Generic[_In, _Out]):
    """A unary RPC as flows name it, typed by its request and response messages."""

    method: str
    """The method of the calls layer (DiscoveryCalls, RegistryCalls, their asyncio twins)."""


@dataclass(frozen=True)
class Call:
    """What a flow yields: an RPC and its request."""

    rpc: Rpc[Any, Any]
    message: Message

    def on(self, calls: object) -> Any:  # noqa: ANN401 - the response, or an awaitable of it
        """Make the call with ``calls``; with an asyncio calls layer, the awaitable of it."""
        return getattr(calls, self.rpc.method)(self.message)


Flow = Generator[Call, Any, _Result]
"""A client's flow: it yields calls and returns a ``_Result``."""


def ask(rpc: Rpc[_In, _Out], message: _In) -> Flow[_Out]:
    """A flow's step that makes one call and gives its response (``yield from`` it)."""
    # The driver sends back what the call returned, which is always the RPC's response type.
    response: _Out = yield Call(rpc, message)
    return response


GET_CONFIG = Rpc[discovery_pb2.GetConfigRequest, discovery_pb2.DiscoveryConfig]("get_config")
DISCOVER = Rpc[discovery_pb2.DiscoverRequest, discovery_pb2.DiscoverResponse]("discover")
BLIND_EVALUATE = Rpc[discovery_pb2.BlindEvaluateRequest, discovery_pb2.BlindEvaluateResponse](
    "blind_evaluate"
)
FETCH_BUCKETS = Rpc[discovery_pb2.FetchBucketsRequest, discovery_pb2.FetchBucketsResponse](
    "fetch_buckets"
)
REGISTER = Rpc[registry_pb2.RegisterRequest, registry_pb2.RegisterResponse]("register")
UNREGISTER = Rpc[registry_pb2.UnregisterRequest, registry_pb2.UnregisterResponse]("unregister")
BLOCK = Rpc[registry_pb2.BlockRequest, registry_pb2.BlockResponse]("block")
UNBLOCK = Rpc[registry_pb2.BlockRequest, registry_pb2.BlockResponse]("unblock")
LOOKUP = Rpc[registry_pb2.LookupRequest, registry_pb2.LookupResponse]("lookup")
SCREEN = Rpc[registry_pb2.ScreenRequest, registry_pb2.ScreenResponse]("screen")
