"""Development certificates, and real TLS handshakes over them with the credential helpers."""

from __future__ import annotations

import datetime
import ipaddress
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from onnet._tls import channel_credentials
from onnet_server.api.tls import TlsConfigError, peer_common_name, server_credentials
from onnet_server.commands.dev_certs import DevCerts, make_dev_certs

FILES = (
    "ca.pem", "ca.key", "server.pem", "server.key",
    "service.pem", "service.key", "client.pem", "client.key",
)  # fmt: skip
PEER_METHOD = "/onnet.test.Peer/CommonName"


@pytest.fixture
def certs(tmp_path: Path) -> DevCerts:
    return make_dev_certs(tmp_path / "certs")


@pytest.fixture
def other_certs(tmp_path: Path) -> DevCerts:
    """A second, unrelated development CA and its certificates."""
    return make_dev_certs(tmp_path / "other")


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def common_name(cert: x509.Certificate) -> str:
    [attribute] = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attribute.value)


def extended_key_usage(cert: x509.Certificate) -> list[x509.ObjectIdentifier]:
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


# The files


def test_writes_the_eight_files(certs: DevCerts, tmp_path: Path) -> None:
    assert sorted(p.name for p in (tmp_path / "certs").iterdir()) == sorted(FILES)
    assert certs.ca_cert == tmp_path / "certs" / "ca.pem"
    assert certs.client_key == tmp_path / "certs" / "client.key"


def test_the_ca_is_a_self_signed_ca(certs: DevCerts) -> None:
    ca = load(certs.ca_cert)
    ca.verify_directly_issued_by(ca)
    assert common_name(ca) == "onnet development CA"
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign
    assert usage.crl_sign
    public = ca.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert isinstance(public.curve, ec.SECP256R1)


def test_the_ca_signs_the_others(certs: DevCerts, other_certs: DevCerts) -> None:
    ca = load(certs.ca_cert)
    for path in (certs.server_cert, certs.service_cert, certs.client_cert):
        cert = load(path)
        cert.verify_directly_issued_by(ca)
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        # An unrelated CA's signature check must fail: the check above proves something.
        with pytest.raises(Exception):  # noqa: B017, PT011
            cert.verify_directly_issued_by(load(other_certs.ca_cert))


def test_serial_numbers_are_random(certs: DevCerts) -> None:
    serials = {load(p).serial_number for p in (certs.ca_cert, certs.server_cert, certs.client_cert)}
    assert len(serials) == 3


def test_validity_starts_in_the_past(tmp_path: Path) -> None:
    """Valid from a little before now (a peer whose clock runs behind accepts them) for the
    default 30 days."""
    minute, hour = datetime.timedelta(minutes=1), datetime.timedelta(hours=1)
    days = datetime.timedelta(days=30)
    before = datetime.datetime.now(datetime.UTC)
    certs = make_dev_certs(tmp_path)
    after = datetime.datetime.now(datetime.UTC)
    whole_second = datetime.timedelta(seconds=1)  # certificates hold whole seconds
    for path in (certs.ca_cert, certs.server_cert, certs.service_cert, certs.client_cert):
        cert = load(path)
        assert before - hour <= cert.not_valid_before_utc <= before - minute
        assert before + days - whole_second <= cert.not_valid_after_utc <= after + days


def test_the_server_certificate_names_every_host(tmp_path: Path) -> None:
    hosts = ("localhost", "127.0.0.1", "::1", "onnet.test")
    certs = make_dev_certs(tmp_path, hosts=hosts, days=2)
    cert = load(certs.server_cert)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost", "onnet.test"]
    assert names.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert extended_key_usage(cert) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 2


def test_the_client_certificates(certs: DevCerts) -> None:
    service, client = load(certs.service_cert), load(certs.client_cert)
    assert common_name(service) == "onnet-dev-service"
    assert common_name(client) == "onnet-dev-client"
    for cert in (service, client):
        assert extended_key_usage(cert) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_private_keys_are_unencrypted_pkcs8_readable_by_the_owner_only(certs: DevCerts) -> None:
    for cert_path, key_path in (
        (certs.ca_cert, certs.ca_key),
        (certs.server_cert, certs.server_key),
        (certs.service_cert, certs.service_key),
        (certs.client_cert, certs.client_key),
    ):
        assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
        pem = key_path.read_bytes()
        assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
        key = serialization.load_pem_private_key(pem, password=None)
        assert key.public_key() == load(cert_path).public_key()


def test_refuses_to_overwrite(certs: DevCerts) -> None:
    before = certs.ca_key.read_bytes()
    with pytest.raises(FileExistsError, match=r"ca\.pem"):
        make_dev_certs(certs.ca_cert.parent)
    assert certs.ca_key.read_bytes() == before


def test_refuses_even_when_only_one_file_exists(tmp_path: Path) -> None:
    (tmp_path / "client.key").write_text("mine")
    with pytest.raises(FileExistsError, match=r"client\.key"):
        make_dev_certs(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["client.key"]


def test_overwrite_replaces_the_files_and_narrows_their_modes(certs: DevCerts) -> None:
    before = certs.ca_key.read_bytes()
    certs.ca_key.chmod(0o644)
    make_dev_certs(certs.ca_cert.parent, overwrite=True)
    assert certs.ca_key.read_bytes() != before
    assert stat.S_IMODE(certs.ca_key.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("hosts", "days", "message"),
    [((), 30, "at least one host"), (("localhost",), 0, "days must be at least 1")],
)
def test_rejects_unusable_arguments(
    tmp_path: Path, hosts: tuple[str, ...], days: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        make_dev_certs(tmp_path, hosts=hosts, days=days)


# The credential helpers, without a network


def test_channel_credentials_need_cert_and_key_together(certs: DevCerts) -> None:
    with pytest.raises(ValueError, match="cert_file and key_file must be given together"):
        channel_credentials(certs.ca_cert, cert_file=certs.client_cert)
    with pytest.raises(ValueError, match="cert_file and key_file must be given together"):
        channel_credentials(certs.ca_cert, key_file=certs.client_key)


def test_channel_credentials_name_an_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.pem"
    with pytest.raises(ValueError, match=r"nowhere\.pem: No such file or directory"):
        channel_credentials(missing)
    not_pem = tmp_path / "ca.der"
    not_pem.write_bytes(b"\x30\x82")
    with pytest.raises(ValueError, match=r"ca\.der holds no PEM"):
        channel_credentials(str(not_pem))


def test_server_credentials_name_an_unreadable_file(certs: DevCerts, tmp_path: Path) -> None:
    missing = tmp_path / "gone.pem"
    with pytest.raises(TlsConfigError, match=r"client CA file .*gone\.pem: No such file"):
        server_credentials(certs.server_cert, certs.server_key, missing)
    with pytest.raises(TlsConfigError, match=r"key file .*certs: Is a directory"):
        server_credentials(certs.server_cert, certs.ca_cert.parent)
    assert issubclass(TlsConfigError, ValueError)


def test_a_key_and_a_certificate_swapped_are_named(certs: DevCerts) -> None:
    """The same check on both sides: a server's files and a client's."""
    with pytest.raises(
        TlsConfigError,
        match=r"certificate file .*server\.key holds a private key, not a certificate",
    ):
        server_credentials(certs.server_key, certs.server_cert)
    with pytest.raises(
        TlsConfigError, match=r"key file .*server\.pem holds a certificate, not a private key"
    ):
        server_credentials(certs.server_cert, certs.server_cert)
    with pytest.raises(
        ValueError, match=r"CA file .*ca\.key holds a private key, not a certificate"
    ):
        channel_credentials(certs.ca_cert.parent / "ca.key")


@pytest.mark.parametrize(
    ("auth_context", "expected"),
    [
        ({}, None),
        ({"transport_security_type": [b"ssl"]}, None),
        ({"x509_common_name": [b"onnet-dev-service"]}, "onnet-dev-service"),
        ({"x509_common_name": [b""]}, None),
        ({"x509_common_name": [b"\xff\xfe"]}, None),
        ({"x509_common_name": [b"a", b"b"]}, None),
    ],
)
def test_peer_common_name(auth_context: dict[str, list[bytes]], expected: str | None) -> None:
    assert peer_common_name(auth_context) == expected


# Real handshakes on loopback


async def _echo_common_name(request: bytes, context: aio.ServicerContext[bytes, bytes]) -> bytes:
    return (peer_common_name(context.auth_context()) or "").encode()


@asynccontextmanager
async def serving(credentials: grpc.ServerCredentials) -> AsyncIterator[str]:
    """A TLS server with the health service and a CN echo; yields its target."""
    server = aio.server()
    try:
        health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "onnet.test.Peer",
                    {"CommonName": grpc.unary_unary_rpc_method_handler(_echo_common_name)},
                ),
            )
        )
        port = server.add_secure_port("127.0.0.1:0", credentials)
        assert port != 0
        await server.start()
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


async def health_check(target: str, credentials: grpc.ChannelCredentials | None) -> int:
    channel = (
        aio.secure_channel(target, credentials)
        if credentials is not None
        else aio.insecure_channel(target)
    )
    async with channel:
        response = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )
        return int(response.status)


async def seen_common_name(target: str, credentials: grpc.ChannelCredentials) -> str:
    async with aio.secure_channel(target, credentials) as channel:
        call: aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(PEER_METHOD)
        return (await call(b"", timeout=10)).decode()


@pytest.mark.integration
async def test_tls_without_client_certificates(certs: DevCerts) -> None:
    async with serving(server_credentials(certs.server_cert, certs.server_key)) as target:
        credentials = channel_credentials(certs.ca_cert)
        assert await health_check(target, credentials) == health_pb2.HealthCheckResponse.SERVING
        assert await seen_common_name(target, credentials) == ""


@pytest.mark.integration
async def test_mutual_tls_identifies_the_client(certs: DevCerts) -> None:
    credentials = server_credentials(certs.server_cert, certs.server_key, certs.ca_cert)
    async with serving(credentials) as target:
        service = channel_credentials(certs.ca_cert, certs.service_cert, certs.service_key)
        assert await health_check(target, service) == health_pb2.HealthCheckResponse.SERVING
        assert await seen_common_name(target, service) == "onnet-dev-service"
        client = channel_credentials(certs.ca_cert, certs.client_cert, certs.client_key)
        assert await seen_common_name(target, client) == "onnet-dev-client"


async def assert_refused(target: str, credentials: grpc.ChannelCredentials | None) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        await health_check(target, credentials)
    assert isinstance(raised.value, aio.AioRpcError)
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.mark.integration
async def test_mutual_tls_refuses_a_client_without_a_certificate(certs: DevCerts) -> None:
    credentials = server_credentials(certs.server_cert, certs.server_key, certs.ca_cert)
    async with serving(credentials) as target:
        await assert_refused(target, channel_credentials(certs.ca_cert))


@pytest.mark.integration
async def test_mutual_tls_refuses_a_certificate_from_another_ca(
    certs: DevCerts, other_certs: DevCerts
) -> None:
    credentials = server_credentials(certs.server_cert, certs.server_key, certs.ca_cert)
    async with serving(credentials) as target:
        stranger = channel_credentials(
            certs.ca_cert, other_certs.service_cert, other_certs.service_key
        )
        await assert_refused(target, stranger)


@pytest.mark.integration
async def test_a_client_trusting_another_ca_refuses_the_server(
    certs: DevCerts, other_certs: DevCerts
) -> None:
    async with serving(server_credentials(certs.server_cert, certs.server_key)) as target:
        await assert_refused(target, channel_credentials(other_certs.ca_cert))


@pytest.mark.integration
async def test_a_plaintext_client_is_refused(certs: DevCerts) -> None:
    async with serving(server_credentials(certs.server_cert, certs.server_key)) as target:
        await assert_refused(target, None)
