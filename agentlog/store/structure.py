"""LMDB's offline walk of a data file (py-lmdb's lmdb.verify), with its leaf pages walked in fewer Python steps.

The walk is pure Python, and most of it is the loop over the nodes of leaf pages, a few Python steps per node.
`_FastVerifier` takes a leaf page of a database under the bytewise key order whose nodes all hold plain values (no
overflow, sub-database or duplicates) and pass every check (within the page, keys rising) in a few passes over
lists, without copying a value: about half the walk's time on a store of events. Any other page, and any leaf page
that fails a check, is walked by py-lmdb's own code from its start, so the findings, and their order, are the
same. When the installed py-lmdb's walker is not the one this was written against, its own walk runs unchanged.
"""

from __future__ import annotations

import os
import struct
import sys

try:
    from lmdb import verify as _lmdb_verify
    from lmdb.verify import VerifyError
except ImportError:                            # an older py-lmdb has no offline verifier
    _lmdb_verify = None

    class VerifyError(Exception):              # type: ignore[no-redef]
        """Never raised: without an offline verifier there is no walk."""

_ORDER = "<" if sys.byteorder == "little" else ">"     # LMDB writes its integers in the host's order
_NODE = struct.Struct(_ORDER + "HHHH")                 # a leaf node's header: lo, hi, flags, key size
_BOUNDS = struct.Struct(_ORDER + "HH")                 # a page's mp_lower, mp_upper
_METHODS = ("_walk_leaf", "_leaf_value", "_check_btree_bounds", "_numkeys", "err", "verify")


def _usable() -> bool:
    """Whether py-lmdb's walker is the one `_FastVerifier` was written against (its internals are not an API)."""
    walker = getattr(_lmdb_verify, "_Verifier", None)
    return walker is not None and all(hasattr(walker, m) for m in _METHODS) and callable(
        getattr(_lmdb_verify, "_cmp_lexical", None)) and getattr(_lmdb_verify, "_E", None) == _ORDER


if _usable():
    _LEXICAL = _lmdb_verify._cmp_lexical          # noqa: SLF001 - the key order the walker gives bytewise databases

    class _FastVerifier(_lmdb_verify._Verifier):    # noqa: SLF001 - its walk, checks and messages, made faster
        """py-lmdb's verifier, with sound leaf pages of plain values checked in one lean loop (the same checks)."""

        def _walk_leaf(self, ctx, pgno, buf):
            if not self._plain_leaf(ctx, buf):
                super()._walk_leaf(ctx, pgno, buf)

        def _plain_leaf(self, ctx, buf) -> bool:
            """Count the page's values when every node is sound and holds a plain value (else False, nothing done):
            each node's header and key and value lie within the page, its flags are clear, keys rise strictly."""
            if ctx["is_free"] or ctx["key_cmp"] is not _LEXICAL:
                return False
            psize, pagebase = self.psize, self.pagebase
            lower, upper = _BOUNDS.unpack_from(buf, self.hdrsz - 4)
            numkeys = self._numkeys(lower)
            if lower < self.hdrsz - pagebase or upper > psize - pagebase or lower > upper or not numkeys:
                return False
            pad = 1 if self.eng["has_txnid"] else 0          # a value starts at an even offset on LMDB 1.0
            lowest, node, last = upper + pagebase, _NODE.unpack_from, ctx["last_key"]
            for ptr in struct.unpack_from(f"{_ORDER}{numkeys}H", buf, self.hdrsz):
                o = ptr + pagebase
                if o + 8 > psize or o < lowest:
                    return False                              # the node's header lies outside the page's nodes
                lo, hi, flags, ksize = node(buf, o)
                if flags or o + 8 + ((ksize + pad) & ~pad) + (lo | hi << 16) > psize:
                    return False                              # not a plain value, or its key or value overruns
                key = buf[o + 8 : o + 8 + ksize]
                if last is not None and key <= last:
                    return False
                last = key
            ctx["last_key"], ctx["entries"] = last, ctx["entries"] + numkeys
            return True


def structure_problems(path: str) -> list[str]:
    """What LMDB's offline walk finds wrong in the data file of the environment directory at `path` (empty: sound).

    Raises:
        VerifyError, OSError: the walk cannot begin (not an LMDB data file, unreadable).
    """
    if not _usable():
        return [] if _lmdb_verify is None else _lmdb_verify.verify(path)
    with open(_lmdb_verify.resolve_data_path(path), "rb") as f:
        f.seek(0, os.SEEK_END)
        return _FastVerifier(f, f.tell()).verify()
