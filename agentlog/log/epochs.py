"""Forked logs and the epochs that heal them: a branch's id and the rules an epoch.start must meet. Pure.

When one author's log forks (a restored backup, a copied key), both signed branches are kept, and the author
continues in the next epoch with an epoch.start at seq 1 (prev zero) whose payload names every branch's head
(docs/format.md, forks and epochs). The store answers through the LogView (agentlog.log.validate) which branch
holds an event.
"""

from __future__ import annotations

from agentlog import crypto
from agentlog.errors import CausalGapError, EpochError
from agentlog.log import payloads

START_KIND = "epoch.start"
_BRANCH_LABEL = b"agentlog branch v1"


def branch_id(author: bytes, first: bytes) -> bytes:
    """The id of the branch whose first event past the fork point is `first`: equal on every device, whichever
    branch it holds as its main chain. Replication names a branch by it where it names an author."""
    return crypto.blake2b256(_BRANCH_LABEL + author + first)


def check_start(h, decoded, head, log) -> None:
    """Raise unless `h` (epoch past the author's held head `head`) is an epoch.start at seq 1 of the next epoch
    that names at least two heads, on different branches of the fork, each held here (its prev is zero, as at
    any seq 1: the heads it names are its links).

    Raises:
        EpochError: not an epoch.start, or one that does not name real branch heads.
        CausalGapError: a named head is not held here (yet).
    """
    author, seq = h.author, h.seq
    if h.kind != START_KIND:
        raise EpochError(f"epoch {h.epoch} begins with a {h.kind} event, not an epoch.start", author, seq)
    if h.epoch != head.epoch + 1 or seq != 1:
        raise EpochError(f"an epoch.start at epoch {h.epoch} seq {seq} does not open epoch {head.epoch + 1} "
                         "at seq 1", author, seq)
    if not isinstance(decoded, payloads.EpochStart) or len(decoded.branches) < 2:
        raise EpochError("an epoch.start must name the heads of at least two branches", author, seq)
    refs = decoded.branches
    if any(r.author != author or r.epoch != head.epoch for r in refs):
        raise EpochError(f"an epoch.start names a head outside its author's epoch {head.epoch}", author, seq)
    if len({r.id for r in refs}) != len(refs):
        raise EpochError("an epoch.start names one head twice", author, seq)
    found = set()
    for r in refs:
        branch = log.branch_of(author, r.epoch, r.seq, r.id)
        if branch is None:
            raise CausalGapError(f"epoch.start names epoch {r.epoch} seq {r.seq} id {r.id.hex()[:16]}, which this "
                                 "store does not hold on a forked branch", author, seq)
        if branch in found:
            raise EpochError("an epoch.start names two heads of one branch", author, seq)
        found.add(branch)


def fork_order(folded):
    """Folded events (key order) with those sharing one (author, epoch, seq), a fork's branches, in id order: each
    device holds a different branch as its main chain, and the views must fold them alike everywhere."""
    held = []
    for f in folded:
        if held and (f.seq, f.epoch, f.author) != (held[0].seq, held[0].epoch, held[0].author):
            yield from sorted(held, key=lambda x: x.eid) if len(held) > 1 else held
            held = []
        held.append(f)
    yield from sorted(held, key=lambda x: x.eid) if len(held) > 1 else held
