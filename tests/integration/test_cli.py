"""The `onnet` command as a person uses it: a real `onnet serve` process and client commands."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import onnet
from onnet.v1 import discovery_pb2
from tests.security import (
    account_metadata,
    register_account,
    registry_client,
    secure_channel,
)
from tests.servers import REPO, server_process

SAMPLE = REPO / "examples" / "contacts.vcf"


def onnet_cli(
    *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "onnet_server", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.slow
def test_the_readme_walkthrough() -> None:
    with server_process(None, "--dev", secure=False) as server:
        assert "DEVELOPMENT MODE" in server.log()
        assert f"(pid {server.process.pid};" in server.log()  # for loadtest --server-pid
        target = ("--target", server.target)
        assert onnet_cli("register", "alice", "+14155550100", *target).returncode == 0
        assert onnet_cli("register", "charles", "020 7946 0958", "--region", "GB", *target).stdout
        hidden = onnet_cli("register", "emmy", "+4930901820", "--not-discoverable", *target)
        assert hidden.returncode == 0
        table = onnet_cli("discover", str(SAMPLE), "--region", "US", *target)
        assert table.returncode == 0, table.stderr
        lines = table.stdout.splitlines()
        assert lines[0].split() == ["CONTACT", "E.164", "USER", "ID"]
        assert any("+14155550100" in line and "alice" in line for line in lines)
        assert any("+442079460958" in line and "charles" in line for line in lines)
        assert "emmy" not in table.stdout
        assert "Ada" not in table.stdout  # names never leave the reader
        assert lines[-1] == "quota: 5 new numbers charged, 19,995 left"  # as the README shows
        as_json = json.loads(
            onnet_cli("discover", str(SAMPLE), "--json", "--region", "US", *target).stdout
        )
        assert {(m["e164"], m["user_id"]) for m in as_json["matches"]} == {
            ("+14155550100", "alice"),
            ("+442079460958", "charles"),
        }
        assert [r["raw"] for r in as_json["rejected"]] == ["555-0199"]
        private = onnet_cli(
            "discover", str(SAMPLE), "--json", "--private", "--region", "US", *target
        )
        in_private = json.loads(private.stdout)
        # The same answer; its 5 evaluations were charged as the hashed run's 5 hashes were.
        assert in_private["quota_remaining"] == as_json["quota_remaining"] - 5
        in_private["quota_remaining"] = as_json["quota_remaining"]
        assert in_private == as_json
        gone = onnet_cli("unregister", "alice", *target)
        assert (gone.returncode, gone.stdout.strip()) == (0, "unregistered alice")
        again = onnet_cli("unregister", "alice", *target)
        assert again.returncode == 1
        assert "no such user" in again.stderr
        assert "Traceback" not in again.stderr
        assert server.terminate() == 0


def test_normalize_writes_one_line_per_input_line() -> None:
    result = onnet_cli(
        "normalize", "--region", "US", stdin="(415) 555-0100\n\n911\n+44 20 7946 0958\n"
    )
    assert result.stdout.splitlines() == [
        "+14155550100",
        "invalid: empty",
        "invalid: too short",
        "+442079460958",
    ]
    assert result.returncode == 1  # some line was invalid
    plus_only = onnet_cli("normalize", stdin="+1 415 555 0100\n")
    assert (plus_only.returncode, plus_only.stdout) == (0, "+14155550100\n")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("normalize", "--region", "XX"), 2, "unknown region code"),
        (("discover", "no-such-file.vcf"), 2, "cannot read"),
        (
            ("discover", str(SAMPLE), "--target", "127.0.0.1:1", "--timeout", "30"),
            3,
            "start the service (`onnet",
        ),
        (("discover", str(SAMPLE), "--target", "127.0.0.1"), 2, "has no port: write HOST:PORT"),
        (("lookup", "+14155550100", "--target", "host:http"), 2, "port must be a number"),
        (("discover", str(REPO / "README.md")), 2, "unknown address book type"),
        (("discover", str(SAMPLE), "--ca", str(REPO / "README.md")), 2, "holds no PEM data"),
        (("register", "alice", "555-0100", "--region", "US"), 2, "area code"),
        (("bogus",), 2, "invalid choice"),
        (("normalize", "--region", "UK"), 2, "unknown region code 'UK': did you mean GB?"),
        (("serve", "--dev", "--max-batch", "0"), 2, "--max-batch (ONNET_MAX_BATCH) must be"),
        (("token", "alice", "--ttl", "0", "--signing-key", "k"), 2, "live at least one second"),
        (("import", str(SAMPLE)), 2, "is an address book (vCard); import takes CSV rows"),
        (("serve", "--dev", "--redis", "redis://127.0.0.1:1/0"), 2, "drop --dev and give a pepper"),
        (
            ("serve", "--redis", "redis://127.0.0.1:1/0"),
            2,
            "make one with `onnet signing-key FILE`",
        ),
        (("serve", "--tls-cert", "x.pem", "--dev"), 2, "--tls-cert (ONNET_TLS_CERT) and --tls-key"),
    ],
)
def test_errors_a_person_understands(args: tuple[str, ...], code: int, message: str) -> None:
    started = time.monotonic()
    result = onnet_cli(*args)
    assert result.returncode == code
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    # Said at once: no retry waits out the 30 s deadline for a server that is not there.
    # One attempt fails within a second; the margin is for starting Python on a busy machine.
    assert time.monotonic() - started < 20


@pytest.mark.parametrize(
    ("command", "url"),
    [
        (("serve",), "redis://:hunter2@127.0.0.1:1/0"),
        (("serve",), "unix:///run/redis.sock?db=0&password=hunter2"),
        (("drop-registry", "--prefix", "x"), "redis://user:hunter2@127.0.0.1:1/0"),
        (("drop-registry", "--prefix", "x"), "redis://127.0.0.1:1/0?password=hunter2"),
    ],
)
def test_a_redis_password_is_refused_on_the_command_line(
    command: tuple[str, ...], url: str
) -> None:
    """The process list shows a command line to every user of the host: the password goes in
    ONNET_REDIS_URL, and the refusal does not repeat it."""
    result = onnet_cli(*command, "--redis", url)
    assert result.returncode == 2
    assert "put the URL in ONNET_REDIS_URL instead" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout


def test_a_malformed_csv_is_refused_not_read_as_empty(tmp_path: Path) -> None:
    book = tmp_path / "book.csv"
    book.write_text('Phone\n"+14155550100\n+14155550101\n')  # a quote never closed
    result = onnet_cli("discover", str(book), "--target", "127.0.0.1:1")
    assert result.returncode == 2
    assert f"{book}: malformed CSV at line 3" in result.stderr
    assert "quote opened and never closed" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_tls_mistakes_get_a_hint(tmp_path: Path) -> None:
    """Plaintext against TLS, a CA that did not sign the server's certificate, and a key
    given as the CA: each says what to do, without gRPC's own log lines."""
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    assert onnet_cli("dev-certs", str(ours)).returncode == 0
    assert onnet_cli("dev-certs", str(theirs)).returncode == 0
    tls = ("--tls-cert", str(ours / "server.pem"), "--tls-key", str(ours / "server.key"))
    with server_process(None, "--dev", *tls, secure=False) as server:
        target = ("--target", server.target)
        plaintext = onnet_cli("discover", str(SAMPLE), *target)
        wrong_ca = onnet_cli("discover", str(SAMPLE), *target, "--ca", str(theirs / "ca.pem"))
        key_as_ca = onnet_cli("discover", str(SAMPLE), *target, "--ca", str(ours / "ca.key"))
        right = onnet_cli("discover", str(SAMPLE), "--region", "US", *target,
                          "--ca", str(ours / "ca.pem"))  # fmt: skip
        assert server.terminate() == 0
    assert plaintext.returncode == 3
    assert "the server may use TLS: give the CA that signed its certificate with --ca FILE" in (
        plaintext.stderr
    )
    assert wrong_ca.returncode == 3
    assert "not signed by the CA you gave" in wrong_ca.stderr
    assert not wrong_ca.stderr.rstrip().endswith(": OK")
    assert "ssl_transport_security" not in wrong_ca.stderr  # gRPC's C core kept quiet
    assert key_as_ca.returncode == 2
    assert "holds a private key, not a certificate" in key_as_ca.stderr
    assert right.returncode == 0, right.stderr


# What README.md's command table (and its note on client commands) says each command takes.
CONNECTION = ["--target", "--timeout", "--token-file", "--ca", "--cert", "--key"]
DOCUMENTED = {
    "serve": [
        "--listen", "--log-level", "--max-batch", "--redis", "--redis-cluster", "--tls-cert",
        "--tls-key", "--tls-client-ca", "--allow-plaintext", "--dev", "--workers",
        "--metrics-listen", "--bench-ceiling",
    ],
    "register": ["USER_ID", "NUMBER", "--region", "--not-discoverable", *CONNECTION],
    "unregister": ["USER_ID", *CONNECTION],
    "block": ["USER_ID", "NUMBER", "--region", *CONNECTION],
    "unblock": ["USER_ID", "NUMBER", "--region", *CONNECTION],
    "lookup": ["NUMBER", "--region", *CONNECTION],
    "screen": ["CALLER", "CALLEE_USER_ID", "--region", *CONNECTION],
    "import": ["FILE", "--batch", "--progress", *CONNECTION],
    "discover": ["FILE", "--region", "--json", "--private", "--state", *CONNECTION],
    "normalize": ["--region"],
    "new-pepper": ["FILE"],
    "dev-certs": ["DIR", "--host", "--days", "--force"],
    "signing-key": ["FILE"],
    "token": ["SUBJECT", "--signing-key", "--kind", "--ttl", "--issuer", "--audience"],
    "move-blocklists": ["--from-prefix", "--to-prefix", "--redis"],
    "drop-registry": ["--prefix", "--yes", "--redis"],
    "loadtest": [
        "--concurrency", "--rate", "--duration", "--requests", "--batch", "--match-share",
        "--populate", "--ceiling", "--json", "--plot",
    ],
}  # fmt: skip


def listed_arguments(help_text: str) -> set[str]:
    """The arguments --help describes, each on a line of its own: options and positionals."""
    return set(re.findall(r"^  (?:-\w, )?(--[\w-]+|[A-Z_]+)", help_text, re.MULTILINE))


@pytest.mark.parametrize("command", sorted(DOCUMENTED))
def test_every_command_has_help(command: str) -> None:
    result = onnet_cli(command, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: onnet " + command + " ")
    listed = listed_arguments(result.stdout)
    assert "--help" in listed
    assert set(DOCUMENTED[command]) <= listed, set(DOCUMENTED[command]) - listed


def test_a_taken_port_is_a_clear_error() -> None:
    with server_process() as server:
        result = onnet_cli("serve", "--dev", "--listen", server.target)
    assert result.returncode == 2
    assert "cannot serve on" in result.stderr
    assert "Traceback" not in result.stderr


def test_new_pepper_and_serving_with_it(tmp_path: Path) -> None:
    pepper = tmp_path / "pepper"
    made = onnet_cli("new-pepper", str(pepper))
    assert made.returncode == 0
    assert onnet_cli("new-pepper", str(pepper)).returncode == 2
    with server_process({"ONNET_PEPPER_FILE": str(pepper)}) as server:
        assert server.terminate() == 0
    assert "ephemeral" not in server.log()
    key_id = made.stdout.split()[2]
    assert f"pepper id {key_id}" in server.log()


def test_sigterm_lets_in_flight_calls_finish() -> None:
    """Under load, SIGTERM ends the process cleanly: every answer that arrives is whole, and
    calls that reach the server after shutdown began are refused (UNAVAILABLE or CANCELLED),
    never failed with INTERNAL or UNKNOWN or a cut-off response."""
    batch = b"".join(onnet.contact_hash(f"+1415555{n:04d}") for n in range(10_000))
    outcomes: list[str] = []
    stop = threading.Event()
    grace = 5

    def hammer(target: str) -> None:
        with secure_channel(target) as channel:
            calls = onnet.DiscoveryCalls(  # a deadline far past the grace, so a hang shows
                channel,
                timeout=60,
                retry=onnet.RetryPolicy(attempts=1),
                metadata=account_metadata(),
            )
            while not stop.is_set():
                try:
                    response = calls.discover(discovery_pb2.DiscoverRequest(hashes=batch))
                    outcomes.append("ok" if list(response.user_ids) == ["alice"] else "bad")
                except onnet.UnavailableError:
                    outcomes.append("refused")
                    return
                except onnet.ServiceError as exc:
                    outcomes.append(exc.code.name)
                    return

    # The same batch again and again, without its re-sync token: a quota large enough.
    env = {"ONNET_SHUTDOWN_GRACE": str(grace), "ONNET_QUOTA_NEW_NUMBERS": "100000000"}
    with server_process(env) as server:
        with registry_client(server.target) as registry:
            registry.register("alice", "+14155550100")
        register_account(server.target)
        workers = [threading.Thread(target=hammer, args=(server.target,)) for _ in range(4)]
        for worker in workers:
            worker.start()
        # Under load: calls are being answered (a busy machine is slow to get there).
        deadline = time.monotonic() + 30
        while outcomes.count("ok") < len(workers):
            assert time.monotonic() < deadline, outcomes
            time.sleep(0.05)
        started = time.monotonic()
        code = server.terminate()
        stop.set()
        for worker in workers:
            worker.join(60)
    assert code == 0
    assert not any(worker.is_alive() for worker in workers)
    # Over within the grace, not at the clients' 60 s deadline: the margin is for a busy
    # machine to finish the last calls and exit.
    assert time.monotonic() - started < grace + 5
    refusals = {"refused", "CANCELLED"}
    assert set(outcomes) <= {"ok"} | refusals
    assert "shutting down" in server.log()
    assert "stopped" in server.log()


@pytest.mark.slow
def test_a_secure_setup_from_the_command_line(tmp_path: Path) -> None:
    """The production path: certificates, a signing key, tokens, TLS, blocks, refusals."""
    certs, key = tmp_path / "certs", tmp_path / "signing.key"
    assert onnet_cli("dev-certs", str(certs)).returncode == 0
    again = onnet_cli("dev-certs", str(certs))  # never overwrites unasked
    assert again.returncode == 2
    assert again.stderr.strip() == f"onnet: {certs / 'ca.pem'} exists; pass --force to overwrite"
    made = onnet_cli("signing-key", str(key))
    assert made.returncode == 0, made.stderr
    assert key.stat().st_mode & 0o777 == 0o600

    def token(subject: str, *kind: str) -> str:
        issued = onnet_cli("token", subject, *kind, "--signing-key", str(key))
        assert issued.returncode == 0, issued.stderr
        return issued.stdout.strip()

    env = {
        "ONNET_TLS_CERT": str(certs / "server.pem"),
        "ONNET_TLS_KEY": str(certs / "server.key"),
        "ONNET_AUTH_JWKS": f"{key}.jwks",
        "ONNET_QUOTA_NEW_NUMBERS": "8",  # the sample book has 5 distinct numbers
        "ONNET_PEPPER": secrets.token_hex(32),
    }
    tls = {"ONNET_TLS_CA": str(certs / "ca.pem")}
    as_service = {**tls, "ONNET_TOKEN": token("account-service", "--kind", "service")}
    as_alice = {**tls, "ONNET_TOKEN": token("alice")}
    with server_process(env, secure=False) as server:
        assert "; TLS;" in server.log()
        target = ("--target", server.target)

        def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
            return onnet_cli(*args, *target, env=env)

        assert run("register", "alice", "+14155550100", env=as_service).returncode == 0
        assert run("register", "bob", "+442079460958", env=as_service).returncode == 0
        state = ("--state", str(tmp_path / "alice.sync"))
        found = run("discover", str(SAMPLE), "--region", "US", "--json", *state, env=as_alice)
        assert {m["user_id"] for m in json.loads(found.stdout)["matches"]} == {"alice", "bob"}
        assert (tmp_path / "alice.sync").stat().st_mode & 0o777 == 0o600
        over = run("discover", str(SAMPLE), "--region", "US", env=as_alice)  # no state: pays
        assert over.returncode == 1
        assert "quota of new numbers exhausted" in over.stderr
        assert over.stderr.count("retry in") == 1  # said once, in days and hours
        assert re.search(r"retry in \d+ days( \d+ h)?$", over.stderr.strip())

        blocked = run("block", "bob", "+14155550100", env=as_service)  # bob blocks alice
        assert (blocked.returncode, blocked.stdout.strip()) == (0, "blocked for bob")
        found = run("discover", str(SAMPLE), "--region", "US", "--json", *state, env=as_alice)
        assert {m["user_id"] for m in json.loads(found.stdout)["matches"]} == {"alice"}
        assert run("unblock", "bob", "+14155550100", env=as_service).returncode == 0

        wrong_kind = run("discover", str(SAMPLE), "--region", "US", env=as_service)
        assert wrong_kind.returncode == 1
        assert "service credential may not call" in wrong_kind.stderr
        not_a_service = run("register", "mallory", "+14155550199", env=as_alice)
        assert not_a_service.returncode == 1
        assert "account credential may not call" in not_a_service.stderr
        anonymous = run("discover", str(SAMPLE), "--region", "US", env=tls)
        assert anonymous.returncode == 1
        assert "needs a credential" in anonymous.stderr
        plaintext = run("discover", str(SAMPLE), "--timeout", "2", env={"ONNET_TOKEN": "x"})
        assert plaintext.returncode == 3
        for result in (over, wrong_kind, not_a_service, anonymous, plaintext):
            assert "Traceback" not in result.stderr
        assert server.terminate() == 0


@pytest.mark.slow
@pytest.mark.parametrize("mode", [(), ("--private",)], ids=["hashed", "private"])
def test_a_kept_state_makes_the_next_sync_free(tmp_path: Path, mode: tuple[str, ...]) -> None:
    """`--state` keeps what was paid for (private mode: the OPRF outputs), and the CLI says
    what each sync cost and what is left."""
    state = tmp_path / "me.sync"
    with server_process(None, "--dev", secure=False) as server:
        target = ("--target", server.target)
        assert onnet_cli("register", "alice", "+14155550100", *target).returncode == 0

        def sync(*extra: str) -> subprocess.CompletedProcess[str]:
            done = onnet_cli("discover", str(SAMPLE), "--region", "US", "--state", str(state),
                             *mode, *target, *extra)  # fmt: skip
            assert done.returncode == 0, done.stderr
            return done

        first = json.loads(sync("--json").stdout)
        assert state.stat().st_mode & 0o777 == 0o600
        assert first["charged"] == first["uploaded"] == 5
        again = json.loads(sync("--json").stdout)
        assert again["charged"] == 0
        assert again["quota_remaining"] == first["quota_remaining"]
        assert again["matches"] == first["matches"]
        table = sync().stdout.splitlines()
        left = f"{first['quota_remaining']:,}"
        assert (
            table[-1]
            == f"quota: 0 new numbers charged (every number was paid for before), {left} left"
        )
        assert server.terminate() == 0
