"""gRPC's own log records lose what could quote a request; onnet's are left alone."""

from __future__ import annotations

import json
import logging
import os
import sys

import pytest

from onnet_server.logs import JsonLines, WithholdLibraryDetails, silence_grpc_core

TOKEN = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"


def record(name: str, message: str, *args: object, exc: bool = False) -> logging.LogRecord:
    info = None
    if exc:
        try:
            raise UnicodeDecodeError("utf-8", TOKEN.encode(), 0, 1, "invalid start byte")
        except UnicodeDecodeError:
            info = sys.exc_info()
    return logging.LogRecord(name, logging.ERROR, __file__, 1, message, args, info)


def formatted(entry: logging.LogRecord) -> str:
    assert WithholdLibraryDetails().filter(entry)
    return logging.Formatter("%(name)s %(message)s").format(entry)


def test_a_grpc_record_keeps_its_template_and_loses_its_values() -> None:
    text = formatted(record("grpc._cython.cygrpc", "Invalid encoding on %s", TOKEN, exc=True))
    assert "Invalid encoding on <withheld>" in text
    assert "eyJzdWIi" not in text
    assert "Traceback" not in text


def test_records_of_onnet_are_untouched() -> None:
    text = formatted(record("onnet_server.api.servicer", "Discover: %d hashes", 5))
    assert text == "onnet_server.api.servicer Discover: 5 hashes"


def test_the_c_core_tracing_is_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRPC_TRACE", "http,api")
    monkeypatch.setenv("GRPC_VERBOSITY", "DEBUG")
    assert silence_grpc_core() == ["GRPC_TRACE", "GRPC_VERBOSITY"]
    assert "GRPC_TRACE" not in os.environ
    assert os.environ["GRPC_VERBOSITY"] == "ERROR"
    assert silence_grpc_core() == []  # nothing left to switch off: no second restart


def test_a_json_line_has_the_four_keys_and_the_events_fields() -> None:
    entry = record("onnet_server.server", "serving on %s:%d", "127.0.0.1", 50051)
    entry.__dict__.update({"event": "serving", "port": 50051, "message": "clash"})
    line = json.loads(JsonLines().format(entry))
    assert line["time"].endswith("Z")
    assert (line["level"], line["logger"]) == ("ERROR", "onnet_server.server")
    assert line["message"] == "serving on 127.0.0.1:50051"
    assert (line["event"], line["port"]) == ("serving", 50051)
    assert "\n" not in JsonLines().format(entry)


def test_a_json_line_of_grpc_still_withholds_its_details() -> None:
    entry = record("grpc._cython.cygrpc", "Invalid encoding on %s", TOKEN, exc=True)
    assert WithholdLibraryDetails().filter(entry)
    text = JsonLines().format(entry)
    assert "eyJzdWIi" not in text
    assert "exception" not in json.loads(text)
