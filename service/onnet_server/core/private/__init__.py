"""Private mode (RFC 9497 OPRF) on the server: its keys and bucket entries, and the service."""
