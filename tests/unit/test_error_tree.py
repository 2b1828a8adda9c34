"""The exception tree the SDK documents is the tree of its real classes, and no more."""

from __future__ import annotations

import argparse
import dataclasses
import re
from typing import Any

import pytest

import onnet
from onnet import _config, _errors, _hashed, _registry
from onnet.v1 import discovery_pb2, registry_pb2
from onnet_server.commands import main as cli
from onnet_server.commands.common import EXIT_REFUSED

_ENTRY = re.compile(r"^(?P<indent>[│ ]*)(?:[├└]── )?(?P<name>[A-Z]\w+)\b")


def documented_tree() -> dict[str, str | None]:
    """Each class of the docstring's tree, with the class it hangs under."""
    lines = [line for line in (_errors.__doc__ or "").splitlines() if line.strip()]
    start = next(i for i, line in enumerate(lines) if line.startswith("OnnetError"))
    parents: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []
    for line in lines[start:]:
        match = _ENTRY.match(line)
        if match is None or not ("──" in line or line.startswith("OnnetError")):
            break
        depth = len(match["indent"]) // 4 + (1 if "──" in line else 0)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parents[match["name"]] = stack[-1][1] if stack else None
        stack.append((depth, match["name"]))
    return parents


def real_tree() -> dict[str, str | None]:
    """Every exception class the package exports, with its nearest exported base."""
    exported = {
        name: member
        for name in onnet.__all__
        if isinstance(member := getattr(onnet, name), type) and issubclass(member, BaseException)
    }
    tree: dict[str, str | None] = {}
    for name, cls in exported.items():
        bases = [b.__name__ for b in cls.__mro__[1:] if b.__name__ in exported]
        tree[name] = bases[0] if bases else None
    return tree


def test_the_documented_tree_is_the_real_one() -> None:
    documented = documented_tree()
    assert len(documented) > 10, "the docstring's tree was not read"
    assert documented == real_tree()


def test_every_sdk_error_is_an_onnet_error() -> None:
    for name, parent in real_tree().items():
        assert parent is not None or name == "OnnetError", name


CONFIG = onnet.ServerConfig(
    contact_hash_version=onnet.CONTACT_HASH_VERSION,
    max_batch=100,
    max_message_bytes=1 << 20,
    quota_remaining=10,
    oprf_suite="ristretto255-SHA512",
    oprf_key_id="k1",
    bucket_prefix_bits=4,
    max_buckets=10,
)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"contact_hash_version": 2}, "contact-hash version 2"),
        ({"max_batch": 0}, "max_batch 0"),
        ({"oprf_suite": ""}, "no ristretto255-SHA512 private mode"),
        ({"max_buckets": 0}, "unusable bucket parameters"),
    ],
)
def test_parameters_the_sdk_cannot_use_are_a_protocol_error(
    change: dict[str, Any], reason: str
) -> None:
    """The SDK's own finding, not a status it makes up."""
    with pytest.raises(onnet.ProtocolError, match=reason) as raised:
        _config.check_private(dataclasses.replace(CONFIG, **change))
    assert not isinstance(raised.value, onnet.ServiceError)


def test_malformed_answers_are_a_protocol_error() -> None:
    response = discovery_pb2.DiscoverResponse(matched_indexes=[5], user_ids=["alice"])
    with pytest.raises(onnet.ProtocolError, match="malformed DiscoverResponse"):
        _hashed._collect([0, 1], response, {})
    with pytest.raises(onnet.ProtocolError, match="malformed LookupResponse"):
        _registry._holders(registry_pb2.LookupResponse(user_ids=["a"]), 2)
    with pytest.raises(onnet.ProtocolError, match="malformed ScreenResponse"):
        _registry._verdict(registry_pb2.ScreenResponse())


def test_the_command_line_reports_a_protocol_error_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bare SDK error once ended `onnet` in a traceback ("server offers no private mode")."""

    def run(args: object) -> int:
        raise onnet.ProtocolError("the server offers no ristretto255-SHA512 private mode")

    parser = cli._parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    commands.choices["normalize"].set_defaults(run=run)
    monkeypatch.setattr(cli, "_parser", lambda: parser)
    with pytest.raises(SystemExit) as exited:
        cli.main(["normalize"])
    assert exited.value.code == EXIT_REFUSED
    assert "cannot use the server's answer: the server offers no" in capsys.readouterr().err
