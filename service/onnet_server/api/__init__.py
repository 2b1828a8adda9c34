"""The inbound adapter: gRPC.

Servicers, the gate every call passes, credentials, statuses, and the metrics and spans of
calls: it turns calls into the core's operations and back.
"""
