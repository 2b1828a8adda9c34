"""The peer in the private-mode comparison: OpenMined PSI, run in its own virtualenv.

OpenMined's package pins an older protobuf than onnet's, so bench_private.py runs this file
with the interpreter of `.venv-psi/` and reads one JSON line from its standard output.
Usage: psi_peer.py USERS CONTACTS MATCHES  (the same deterministic sets as bench_private.py)
"""

import json
import sys
import time


def items(users: int, contacts: int, matches: int) -> tuple[list[str], list[str]]:
    """Valid US numbers: registered ones in 415 and 650, unregistered contacts in 212."""
    server = [f"+1{415 if i % 2 else 650}{2_000_000 + i // 2:07d}" for i in range(users)]
    client = server[:: max(1, users // matches)][:matches]
    client += [f"+1212{2_000_000 + i:07d}" for i in range(contacts - len(client))]
    return server, client


def main() -> None:
    """Measure OpenMined PSI on the sets and print the figures as one JSON line."""
    # Imported here: onnet's benchmark imports `items` from this file without the package.
    import private_set_intersection.python as psi

    users, contacts, matches = (int(arg) for arg in sys.argv[1:4])
    server_items, client_items = items(users, contacts, matches)
    started = time.process_time()
    server = psi.server.CreateWithNewKey(True)
    client = psi.client.CreateWithNewKey(True)
    setup = server.CreateSetupMessage(1e-9, len(client_items), server_items, psi.DataStructure.GCS)
    setup_cpu = time.process_time() - started
    wall = time.perf_counter()
    request = client.CreateRequest(client_items)
    response = server.ProcessRequest(request)
    found = client.GetIntersection(setup, response)
    online = time.perf_counter() - wall
    print(
        json.dumps(
            {
                "setup_cpu_s": setup_cpu,
                "setup_bytes": setup.ByteSize(),
                "request_bytes": request.ByteSize(),
                "response_bytes": response.ByteSize(),
                "online_s": online,
                "found": len(found),
            }
        )
    )


if __name__ == "__main__":
    main()
