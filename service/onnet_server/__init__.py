"""onnet's server: the Discovery and Registry gRPC services over a registry store."""

import os

# gRPC's C core prints its informational lines (each failed TLS handshake, for one) on
# standard error, between the command's own messages; onnet says what went wrong itself.
# Read when gRPC starts, so set before anything imports grpc; an explicit setting wins.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
