"""Bulk writes: memory updates of 256 KB, the largest event the limits allow."""

from __future__ import annotations

from agentlog.log import payloads

ENTRY = b"e" * 16


def bulk(i: int, fields: int = 16) -> list:
    """A memory.update of ENTRY changing its content `fields` times (16 KB each: 256 KB at most, the largest
    event the limits allow), after the memory.put it needs when i is 0."""
    update = payloads.MemoryUpdate(entry=ENTRY, fields=tuple(payloads.MemoryField(content=f"{i}.{k}:" + "x" * 16_000)
                                                             for k in range(fields)))
    return [payloads.MemoryPut(entry=ENTRY, type="fact", content="bulk"), update] if i == 0 else [update]
