"""Loads the Cap'n Proto schemas from the repository's `schemas/` directory once."""

from __future__ import annotations

from pathlib import Path

import capnp

capnp.remove_import_hook()

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"


def _load(name: str):
    path = SCHEMA_DIR / name
    if not path.is_file():
        raise ImportError(f"schema {path} is missing: install agentlog from its source tree (make install)")
    return capnp.load(str(path))


event = _load("event.capnp")
payloads = _load("payloads.capnp")
token = _load("token.capnp")
protocol = _load("protocol.capnp")
