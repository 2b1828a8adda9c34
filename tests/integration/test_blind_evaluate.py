"""BlindEvaluate through a real server: the client's OPRF output equals the server's PRF."""

from __future__ import annotations

import pytest

import onnet
from onnet.protocol import oprf
from onnet.v1 import discovery_pb2
from onnet_server.core.private.keys import OprfKey
from tests.security import async_discovery_client, discovery_client
from tests.servers import ThreadedServer

NUMBERS = [b"+14155550100", b"+442079460958", b"+4930901820"]


def server_key(server: ThreadedServer) -> OprfKey:
    assert server.config.pepper_hex is not None
    key = OprfKey.from_pepper(bytes.fromhex(server.config.pepper_hex))
    with discovery_client(server.target) as client:
        assert client.get_config().oprf_key_id == key.key_id
    return key


def test_blind_evaluate_then_finalize_gives_the_prf_output(server: ThreadedServer) -> None:
    key = server_key(server)
    blinds = [oprf.blind(number) for number in NUMBERS]
    request = discovery_pb2.BlindEvaluateRequest(
        blinded_elements=b"".join(blinded for _, blinded in blinds)
    )
    with discovery_client(server.target) as client:
        response = client.calls.blind_evaluate(request)
    assert response.key_id == key.key_id
    evaluated = response.evaluated_elements
    assert len(evaluated) == 32 * len(NUMBERS)
    for i, (number, (blind, _)) in enumerate(zip(NUMBERS, blinds, strict=True)):
        output = oprf.finalize(number, blind, evaluated[32 * i : 32 * i + 32])
        assert output == oprf.evaluate(key.secret, number)


async def test_async_blind_evaluate(server: ThreadedServer) -> None:
    blind, blinded = oprf.blind(NUMBERS[0])
    async with async_discovery_client(server.target) as client:
        response = await client.calls.blind_evaluate(
            discovery_pb2.BlindEvaluateRequest(blinded_elements=blinded)
        )
    key = server_key(server)
    assert oprf.finalize(NUMBERS[0], blind, response.evaluated_elements) == oprf.evaluate(
        key.secret, NUMBERS[0]
    )


VALID = oprf.blind(b"+14155550100")[1]


@pytest.mark.parametrize(
    ("elements", "message"),
    [
        (b"", "must hold at least one element"),
        (VALID[:31], "length 31 is not a multiple of 32"),
        (VALID + bytes(32), "element 1 is not a canonical, non-identity"),  # the identity
        (b"\xff" * 32, "element 0 is not a canonical"),  # not an encoding of any element
        (VALID * 10_001, "batch of 10001 elements exceeds the limit of 10000"),
    ],
)
def test_bad_blinded_elements(server: ThreadedServer, elements: bytes, message: str) -> None:
    request = discovery_pb2.BlindEvaluateRequest(blinded_elements=elements)
    with discovery_client(server.target, retry=onnet.RetryPolicy(attempts=1)) as client:
        with pytest.raises(onnet.InvalidArgumentError) as caught:
            client.calls.blind_evaluate(request)
        assert caught.value.field == "blinded_elements"
        assert message in caught.value.reason
        assert client.get_config().max_batch == 10_000  # still serving
