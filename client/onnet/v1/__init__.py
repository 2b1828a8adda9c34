"""Generated protobuf and gRPC stubs for package ``onnet.v1`` (made by scripts/gen_protos.py)."""
