"""Loads the Cap'n Proto schemas shipped in the package (`agentlog/codec/schemas/`) once."""

from __future__ import annotations

from pathlib import Path

import capnp

capnp.remove_import_hook()

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"


def _load(name: str):
    path = SCHEMA_DIR / name
    if not path.is_file():
        raise ImportError(f"schema {path} is missing: this agentlog installation is incomplete; reinstall it")
    return capnp.load(str(path))


event = _load("event.capnp")
payloads = _load("payloads.capnp")
token = _load("token.capnp")
protocol = _load("protocol.capnp")
