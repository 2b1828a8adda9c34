"""The gate every call passes: its credential, its rate and its message, decided in one place.

What each method needs is read from the service descriptors when the server is built
(``method_rules``), never remembered per handler (DESIGN.md section 6, security by
construction): a method of a service listed with a credential kind needs that kind; the
standard health and reflection services are public; and a method the server would answer
but that has no rule is refused, so a service added without thought is closed, not open.

The checks run in order of cost, cheapest first:

1. when a call's headers arrive, before a byte of its message is read: the method's rule,
   the credential (verified once, then cached), that the account is registered, and the
   account's call rate. A refusal here answers at once and the message is never read, so
   nothing unauthenticated holds more than the transport's per-stream window;
2. when the call starts: a call slot of its class (``CallSlots``): public calls and account
   calls each have a share of the server's slots, so that neither anonymous callers nor
   accounts, however many, can take the slots of the others (services keep the rest), and
   one account has at most its own few calls in flight;
3. each message must arrive within the receive timeout, or the call ends: a client that
   trickles a message holds its slot only that long;
4. once it has arrived: its size against the method's own limit, then parsing, so that
   malformed bytes get INVALID_ARGUMENT naming the request instead of gRPC's UNKNOWN with
   the parser's internals;
5. only then the handler, which finds its verified caller with ``current_caller()``.

Every method is served as a client-streaming one (its handler is called when the call
starts and reads its message itself): a unary handler would be called only once its message
had arrived, so it could neither time the message out nor give back the slot of a call
cancelled before that. Each method's wrapped handler is built once; a call only sets its
caller (a context variable, private to the call's task) and gets the handler.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import DecodeError
from grpc import aio

from onnet.protocol import KIND_ACCOUNT
from onnet_server.api.auth import Authenticator, Caller
from onnet_server.api.status import abort_for
from onnet_server.api.tls import peer_common_name
from onnet_server.api.wire import passing_encoded
from onnet_server.core.call_rate import CallRates
from onnet_server.core.errors import (
    DeadlineExceeded,
    DomainError,
    InvalidArgument,
    PermissionDenied,
    ServiceBusy,
    StoreUnavailable,
    UnknownAccount,
)

__all__ = ["PUBLIC", "CallGate", "CallSlots", "MethodRule", "current_caller", "method_rules"]

PUBLIC = "public"
"""The credential kind of a method anyone may call (health checks, reflection)."""

_CALLER: contextvars.ContextVar[Caller] = contextvars.ContextVar("onnet_caller")
_PUBLIC_CALLER = Caller(PUBLIC, "")
_BY_CERTIFICATE = Caller("", "")
"""A caller to be known once the call runs: a service by its client certificate."""

Continuation: TypeAlias = (
    "Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]]"
)
# grpc.aio runs coroutine handlers; the grpc stubs type them as synchronous, hence Any.
Behaviour: TypeAlias = Any


def current_caller() -> Caller:
    """The verified caller of the call being handled (set by the gate before the handler)."""
    return _CALLER.get()


@dataclass(frozen=True)
class MethodRule:
    """What one method needs before its handler runs."""

    credential: str
    """``account``, ``service`` or ``PUBLIC``."""
    max_request_bytes: int
    """The largest message this method can legitimately need."""

    @property
    def for_accounts(self) -> bool:
        """Calls of accounts: registered accounts only, rate-limited (services are trusted)."""
        return self.credential == KIND_ACCOUNT


def method_rules(
    services: Mapping[str, tuple[ServiceDescriptor, str]],
    request_limits: Mapping[str, int],
    default_limit: int,
) -> dict[str, MethodRule]:
    """A rule for every method of ``services`` (name -> (descriptor, credential kind)).

    ``request_limits`` maps a method path (``/package.Service/Method``) to its largest
    request; other methods get ``default_limit``.
    """
    rules = {}
    for service, credential in services.values():
        for method in service.methods:
            path = f"/{service.full_name}/{method.name}"
            rules[path] = MethodRule(credential, request_limits.get(path, default_limit))
    unknown = set(request_limits) - set(rules)
    if unknown:
        raise ValueError(f"request limits for methods no service has: {sorted(unknown)}")
    return rules


@dataclass
class CallSlots:
    """How many calls of each class may be in flight at once, and how many are.

    Services (trusted) are not counted: they have whatever the two shares leave of the
    server's own limit (``ONNET_MAX_CONCURRENT_CALLS``, enforced by gRPC).
    """

    public: int
    """Calls nobody is known for (health checks, reflection)."""
    accounts: int
    """Calls of all accounts together."""
    rates: CallRates
    """Each account's own calls in flight."""
    _taken: dict[str, int] = field(default_factory=lambda: {PUBLIC: 0, KIND_ACCOUNT: 0})

    @classmethod
    def shares_of(cls, max_calls: int, rates: CallRates) -> CallSlots:
        """A tenth of ``max_calls`` for public calls, eight tenths for accounts."""
        return cls(max(2, max_calls // 10), max(1, max_calls * 8 // 10), rates)

    def take(self, caller: Caller) -> Callable[[], None]:
        """A slot for one call of ``caller``, or ServiceBusy/RateLimited; returns its release."""
        kind = caller.kind
        if kind not in self._taken:
            return _nothing
        share = self.public if kind == PUBLIC else self.accounts
        if self._taken[kind] >= share:
            raise ServiceBusy("", f"all {share} slots for {kind} calls are taken; retry shortly")
        if kind == KIND_ACCOUNT:
            self.rates.enter(caller.subject)
        self._taken[kind] += 1

        def release() -> None:
            self._taken[kind] -= 1
            if kind == KIND_ACCOUNT:
                self.rates.leave(caller.subject)

        return release


def _nothing() -> None:
    """The release of a call that holds no counted slot."""


class CallGate(aio.ServerInterceptor):
    """Checks every call against its method's rule before the handler sees it."""

    def __init__(
        self,
        rules: Mapping[str, MethodRule],
        auth: Authenticator,
        slots: CallSlots,
        *,
        require_account: Callable[[str], object],
        refresh_accounts: Callable[[], Awaitable[object]] | None = None,
        receive_timeout: float = 30.0,
    ) -> None:
        """Apply ``rules``; verify credentials with ``auth``; hold calls in ``slots``.

        ``require_account`` raises PermissionDenied for an account the registry does not
        know (UnknownAccount); before that refusal, ``refresh_accounts`` (if any) brings
        the registry up to date and the account is looked up once more. Each request
        message must arrive within ``receive_timeout`` seconds.
        """
        self._rules = dict(rules)
        self._auth = auth
        self._slots = slots
        self._require_account = require_account
        self._refresh_accounts = refresh_accounts
        self._receive_timeout = receive_timeout
        self._gated: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        """Refuse the call at once, or set its caller and return its method's checked handler."""
        method = handler_call_details.method
        gated = self._gated.get(method)
        if gated is None:
            # First call of this method: is it served, and by a rule?
            handler = await continuation(handler_call_details)
            if handler is None:
                return None  # no such method: gRPC answers UNIMPLEMENTED
            rule = self._rules.get(method)
            if rule is None:
                return _refusal(
                    PermissionDenied("", "this method has no access rule, so it is closed"),
                    method,
                )
            checks = _Checks(
                method,
                rule,
                self._auth,
                self._slots,
                handler.request_deserializer,
                self._receive_timeout,
            )
            gated = self._gated[method] = _gated(handler, checks)
        try:
            caller = await self._identified(
                self._rules[method], handler_call_details.invocation_metadata or ()
            )
        except DomainError as error:
            return _refusal(error, method)
        _CALLER.set(caller)
        return gated

    async def _identified(self, rule: MethodRule, metadata: Iterable[Any]) -> Caller:
        """The caller, checked from the headers alone (or to be known by its certificate).

        An account is counted against its call rate first, then must be registered: one
        the index does not know is looked up again once the registry caught up.
        """
        if rule.credential == PUBLIC:
            return _PUBLIC_CALLER
        if self._auth.defers_to_peer(metadata, rule.credential):
            return _BY_CERTIFICATE
        caller = self._auth.check(metadata, rule.credential)
        if not rule.for_accounts:
            return caller
        self._slots.rates.admit(caller.subject)
        try:
            self._require_account(caller.subject)
        except UnknownAccount as unknown:
            if self._refresh_accounts is None:
                raise
            try:
                # Registered through another process a moment ago? Not refused for that.
                await self._refresh_accounts()
            except StoreUnavailable:
                raise unknown from None  # what the index says: fail closed
            self._require_account(caller.subject)
        return caller


def _refusal(error: DomainError, method: str) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler that ends the call with ``error`` without reading its message.

    A client-streaming handler is called as soon as the call starts, while any other kind
    would first wait for the whole request message: this one never asks for it.
    """

    async def refuse(
        requests: AsyncIterator[bytes], context: aio.ServicerContext[Any, Any]
    ) -> None:
        await abort_for(error, context, method)

    return grpc.stream_unary_rpc_method_handler(refuse)


@dataclass(frozen=True)
class _Checks:
    """The checks one admitted call still needs, once it runs: slot, messages, parsing."""

    method: str
    rule: MethodRule
    auth: Authenticator
    slots: CallSlots
    parse: Callable[[bytes], Any] | None
    receive_timeout: float

    def start(self, context: aio.ServicerContext[Any, Any]) -> None:
        """Take the call's slot until the call has ended; know a service by its certificate.

        Ended means gRPC is done with it, not that the handler returned: an answer a client
        never reads keeps its call alive in gRPC (and counted in its limit of calls), so it
        keeps its slot too.
        """
        known = _CALLER.get()
        if known is _BY_CERTIFICATE:
            peer = peer_common_name(context.auth_context())
            known = self.auth.check((), self.rule.credential, peer)
            _CALLER.set(known)
        release = self.slots.take(known)
        # The stubs type the callback as a class of their own; any callable of one argument
        # is what gRPC calls.
        context.add_done_callback(lambda _: release())  # type: ignore[arg-type]

    async def one_message(self, raws: AsyncIterator[bytes]) -> Any:  # noqa: ANN401
        """The one request message of a call with a unary request, decoded."""
        raw = await self._within_timeout(anext(raws))
        # gRPC's request stream is an async generator in a reference cycle: left open, only
        # the garbage collector frees it, and asyncio then runs a task to close it. Closed
        # here, it is freed at once: that was 21 objects, a collection's share and a task a
        # call (bench/README.md, issue 12).
        close = getattr(aiter(raws), "aclose", None)
        if close is not None:
            await close()
        if raw is None:
            raise InvalidArgument("request", "the call ended without a request message")
        return self._decode(raw)

    async def each_message(self, raws: AsyncIterator[bytes]) -> AsyncIterator[Any]:
        """The messages of a request stream, each timed and decoded."""
        while (raw := await self._within_timeout(anext(raws))) is not None:
            yield self._decode(raw)

    async def _within_timeout(self, next_raw: Awaitable[bytes]) -> bytes | None:
        """The next message, or None at the end of the stream; DeadlineExceeded if late."""
        try:
            # asyncio.timeout, not wait_for: no extra task per message.
            async with asyncio.timeout(self.receive_timeout):
                return await next_raw
        except TimeoutError:
            raise DeadlineExceeded(
                "request", f"the message did not arrive within {self.receive_timeout:g} s"
            ) from None
        except StopAsyncIteration:
            return None

    def _decode(self, raw: bytes) -> Any:  # noqa: ANN401 - whatever the method's message is
        """The message in ``raw``, within the method's size limit."""
        limit = self.rule.max_request_bytes
        if len(raw) > limit:
            raise InvalidArgument(
                "request", f"{len(raw)} bytes exceed this method's limit of {limit}"
            )
        if self.parse is None:
            return raw
        try:
            return self.parse(raw)
        except DecodeError:
            raise InvalidArgument("request", "malformed request message") from None


def _gated(
    handler: grpc.RpcMethodHandler[Any, Any], checks: _Checks
) -> grpc.RpcMethodHandler[Any, Any]:
    """``handler`` behind ``checks``, served with a streaming request (see the module doc)."""
    serialize = passing_encoded(handler.response_serializer)
    if handler.unary_unary is not None:
        one = _single_answer(handler.unary_unary, checks, streamed=False)
        return grpc.stream_unary_rpc_method_handler(one, None, serialize)
    if handler.stream_unary is not None:
        one = _single_answer(handler.stream_unary, checks, streamed=True)
        return grpc.stream_unary_rpc_method_handler(one, None, serialize)
    inner = handler.unary_stream or handler.stream_stream
    many = _many_answers(inner, checks, streamed=handler.stream_stream is not None)
    return grpc.stream_stream_rpc_method_handler(many, None, serialize)


def _single_answer(inner: Behaviour, checks: _Checks, *, streamed: bool) -> Behaviour:
    """A method with one answer, its request unary or ``streamed``."""

    async def behaviour(raws: AsyncIterator[bytes], context: aio.ServicerContext[Any, Any]) -> Any:  # noqa: ANN401
        try:
            checks.start(context)
            request = checks.each_message(raws) if streamed else await checks.one_message(raws)
            return await inner(request, context)
        except DomainError as error:  # no slot, or a late or malformed message
            await abort_for(error, context, checks.method)

    return behaviour


def _many_answers(inner: Behaviour, checks: _Checks, *, streamed: bool) -> Behaviour:
    """A method with a stream of answers, its request unary or ``streamed``."""

    async def behaviour(
        raws: AsyncIterator[bytes], context: aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        try:
            checks.start(context)
            request = checks.each_message(raws) if streamed else await checks.one_message(raws)
            async for answer in _answers(inner(request, context)):
                yield answer
        except DomainError as error:  # no slot, or a late or malformed message in the stream
            await abort_for(error, context, checks.method)

    return behaviour


async def _answers(result: Any) -> AsyncIterator[Any]:  # noqa: ANN401 - a handler's result
    """The answers of a streaming handler, which either yields them or writes them itself."""
    if inspect.isasyncgen(result):
        async for answer in result:
            yield answer
    else:
        await result  # it wrote its answers with context.write()
