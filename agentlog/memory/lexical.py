"""BM25 over the search index's rows (content and tags): finds exact names and numbers, ignores stopwords.

The postings (term -> the slots holding it and how often) are stored with the index, patched in
the transaction that patches its blocks, and a search reads only its terms' postings: a new
process ranks by BM25 without tokenising a single stored row.
Stored in memory.index.meta: POSTINGS_KEY term(UTF-8, or a hash when long) \0 chunk(4) -> the
slots (uint32 LE) of that CHUNK slots' range holding the term, then their counts (uint32 LE).

Terms: NFKC, casefolded `\\w+` runs, without English stopwords ("on", "the"), each cut to a
light stem (seats -> seat, parked -> park) so a word's forms meet; numbers and names stay whole.
"""

from __future__ import annotations

import hashlib
import math
import re
import struct
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

K1 = 1.2                       # term-frequency saturation
B = 0.75                       # length normalisation
_WORD = re.compile(r"\w+")
STOPWORDS = frozenset("""
a about above after again all am an and any are as at be been before being below between both but by can
could did do does doing down during each few for from further had has have having he her here hers him his
how i if in into is it its just me more most my no nor not of off on once only or other our ours out over own
same she should so some such than that the their them then there these they this those through to too under
until up very was we were what when where which while who whom why will with would you your yours
""".split())
POSTINGS_KEY = b"\1"
CHUNK = 4096                   # slots per stored postings value: a change rewrites one range's value
MAX_TERM_KEY = 400             # bytes: LMDB keys stop at 511
_U32 = struct.Struct(">I")
_SUFFIXES = ("ingly", "edly", "ing", "ies", "ied", "es", "ed", "ly", "s")


def stem(word: str) -> str:
    """A light suffix cut: plurals, -ing, -ed and -ly (a doubled last consonant undone), leaving at least
    three letters; words with digits untouched."""
    if len(word) <= 3 or not word.isalpha():
        return word
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            if suffix in ("ies", "ied"):
                return word[: -len(suffix)] + "y"
            if suffix == "s" and word.endswith(("ss", "us", "is")):
                return word
            if suffix == "es" and not word.endswith(("ches", "shes", "sses", "xes", "zes")):
                return word[:-1]
            cut = word[: -len(suffix)]
            if suffix in ("ing", "ed") and len(cut) > 3 and cut[-1] == cut[-2] and cut[-1] not in "lsz":
                return cut[:-1]                       # swimming -> swim, planned -> plan
            return cut
    return word


def terms(text: str, keep_stopwords: bool = False) -> list[str]:
    """The text's search terms, in order."""
    words = _WORD.findall(unicodedata.normalize("NFKC", text).casefold())
    return [stem(w) for w in words if keep_stopwords or w not in STOPWORDS]


def query_terms(query: str) -> list[str]:
    """The query's distinct terms; a query of stopwords alone keeps them (a search for "the who" still finds)."""
    found = terms(query) or terms(query, keep_stopwords=True)
    return list(dict.fromkeys(found))


def row_text(row) -> str:
    """What a row is searched by: its search text (content and merged entries' text) and its tags."""
    return " ".join((row.content, *row.tags))


def counts(row) -> Counter:
    """A row's terms and how often each occurs (its length is their sum); empty for an empty slot."""
    return Counter(terms(row_text(row))) if row is not None else Counter()


def term_key(term: str) -> bytes:
    """A term's key in the postings: its UTF-8, or a hash of a term too long for an LMDB key ("#" is
    never part of a term)."""
    raw = term.encode()
    return raw if len(raw) <= MAX_TERM_KEY else b"#" + hashlib.blake2b(raw, digest_size=16).hexdigest().encode()


def _chunk_key(term: bytes, chunk: int) -> bytes:
    return POSTINGS_KEY + term + b"\0" + _U32.pack(chunk)


def postings(txn, db, term: str) -> tuple[np.ndarray, np.ndarray]:
    """(slots, counts) of every stored row holding `term`, by slot: one read per CHUNK slots' range."""
    prefix = POSTINGS_KEY + term_key(term) + b"\0"
    parts = []
    with txn.cursor(db=db) as cur:
        found = cur.set_range(prefix)
        while found and bytes(cur.key()[: len(prefix)]) == prefix:
            parts.append(np.frombuffer(cur.value(), dtype="<u4").reshape(2, -1))
            found = cur.next()
    if not parts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    both = np.concatenate(parts, axis=1).astype(np.int64)
    return both[0], both[1]


def write_postings(txn, db, changes: dict[int, tuple[Counter, Counter]]) -> None:
    """Store the postings of changed slots: slot -> (terms it held, terms it holds now). Each
    (term, CHUNK slots) range is one value: its slots then their counts, uint32 LE, by slot."""
    moved: dict[tuple[bytes, int], dict[int, int]] = {}
    for slot, (old, new) in changes.items():
        chunk = slot // CHUNK
        for term in old.keys() - new.keys():
            moved.setdefault((term_key(term), chunk), {})[slot] = 0
        for term, tf in new.items():
            if old.get(term) != tf:
                moved.setdefault((term_key(term), chunk), {})[slot] = tf
    for (term, chunk), slots in sorted(moved.items()):
        key = _chunk_key(term, chunk)
        raw = txn.get(key, db=db)
        change = np.array(sorted(slots.items()), dtype=np.int64).T
        held = np.frombuffer(raw, dtype="<u4").reshape(2, -1) if raw is not None else np.zeros((2, 0), "<u4")
        both = np.concatenate((held[:, ~np.isin(held[0], change[0])], change[:, change[1] > 0]), axis=1)
        if both.shape[1]:
            txn.put(key, both[:, np.argsort(both[0], kind="stable")].astype("<u4").tobytes(), db=db)
        elif raw is not None:
            txn.delete(key, db=db)


def clear_postings(txn, db) -> None:
    with txn.cursor(db=db) as cur:
        found = cur.set_range(POSTINGS_KEY)
        while found and cur.key()[:1] == POSTINGS_KEY:
            found = cur.delete()


@dataclass
class Corpus:
    """What BM25 ranks over: each row's length, the rows a search may return, their entry ids
    (`id_at`), the live rows' count and total length, and per query term the rows holding it."""

    lengths: np.ndarray
    mask: np.ndarray
    id_at: Callable[[int], bytes]
    live: int
    total: int
    found: dict[str, tuple[np.ndarray, np.ndarray]]   # term -> (rows, counts): every live row holding it


def idf(live: int, df: int) -> float:
    """BM25's idf, ln(1 + (N - df + 0.5) / (df + 0.5)): positive even for a term in every row."""
    return math.log(1.0 + (live - df + 0.5) / (df + 0.5))


def search(corpus: Corpus, query: str, k: int) -> list[tuple[bytes, float]]:
    """The k best rows by BM25 as (entry id, score), best first, ties by entry id. Each row's score
    adds its terms' parts in one order (the terms sorted), so every process sums alike."""
    wanted = sorted(t for t in query_terms(query) if t in corpus.found and len(corpus.found[t][0]))
    if not wanted or not corpus.live:
        return []
    average = corpus.total / corpus.live or 1.0
    score = np.zeros(len(corpus.mask), dtype=np.float64)
    hit = np.zeros(len(corpus.mask), dtype=bool)
    for t in wanted:
        rows, tfs = corpus.found[t]
        part = idf(corpus.live, len(rows))
        keep = corpus.mask[rows]
        rows, tf = rows[keep], tfs[keep].astype(np.float64)
        norm = K1 * (1 - B + B * corpus.lengths[rows].astype(np.float64) / average)
        score[rows] += part * tf * (K1 + 1) / (tf + norm)
        hit[rows] = True
    rows = np.flatnonzero(hit)
    if len(rows) > k:
        kth = np.partition(score[rows], len(rows) - k)[len(rows) - k]
        rows = rows[score[rows] >= kth]
    best = sorted((-float(score[i]), corpus.id_at(i)) for i in rows.tolist())[:k]
    return [(entry_id, -neg) for neg, entry_id in best]
