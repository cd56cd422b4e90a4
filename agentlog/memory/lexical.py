"""BM25 over the search index's rows (content and tags): finds exact names and numbers, ignores stopwords.

A process keeps one `Lexicon` (an inverted index) beside its `Matrix` and refreshes it from the
matrix's rows: the matrix stamps each slot it copies in from the index's blocks (the slots the
journal's (entry id, slot) changes name, or all of them on a full load), and a refresh tokenises
again only the rows whose stamp moved, so after a few changes it costs one array comparison and
the changed rows' words.

Terms: NFKC, casefolded `\\w+` runs, without English stopwords ("on", "the"), each cut to a
light stem (seats -> seat, parked -> park) so a word's forms meet; numbers and names stay whole.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter

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


class Lexicon:
    """An inverted index of a matrix's rows (term -> row -> count) and their lengths, kept in step with the
    matrix; a query touches only the rows holding one of its terms."""

    def __init__(self):
        self.model = None
        self._stamp = np.zeros(0, dtype=np.uint64)   # the matrix's stamp of each row when its terms were taken
        self._terms: list[Counter | None] = []
        self._lengths: list[int] = []
        self.postings: dict[str, dict[int, int]] = {}
        self.total = 0                            # sum of the live rows' lengths
        self.live = 0

    def refresh(self, matrix) -> None:
        """Catch up with the matrix's rows (after `matrix.refresh`): tokenise the rows whose stamp moved."""
        n = matrix.n
        if matrix.model != self.model or len(self._terms) > n:
            self.__init__()
            self.model = matrix.model
        if len(self._terms) < n:
            grown = np.zeros(n, dtype=np.uint64)
            grown[: len(self._stamp)] = self._stamp
            self._stamp = grown
            self._terms.extend([None] * (n - len(self._terms)))
            self._lengths.extend([0] * (n - len(self._lengths)))
        changed = np.flatnonzero(matrix.stamp[:n] != self._stamp[:n]).tolist()
        if not changed:
            return
        rows = matrix.rows
        for i in changed:
            self._forget(i)
            row = rows[i]
            if row is not None:
                found = terms(row_text(row))
                counts = Counter(found)
                for term, tf in counts.items():
                    self.postings.setdefault(term, {})[i] = tf
                self._terms[i], self._lengths[i] = counts, len(found)
                self.total += len(found)
                self.live += 1
        self._stamp[:n] = matrix.stamp[:n]

    def _forget(self, i: int) -> None:
        counts = self._terms[i]
        if counts is None:
            return
        for term in counts:
            rows = self.postings[term]
            del rows[i]
            if not rows:
                del self.postings[term]
        self.total -= self._lengths[i]
        self.live -= 1
        self._terms[i], self._lengths[i] = None, 0

    def idf(self, term: str) -> float:
        """BM25's idf, ln(1 + (N - df + 0.5) / (df + 0.5)): positive even for a term in every row."""
        df = len(self.postings.get(term, ()))
        return math.log(1.0 + (self.live - df + 0.5) / (df + 0.5))

    def scores(self, query: str, mask: np.ndarray) -> dict[int, float]:
        """Row -> BM25 score for the rows under `mask` holding at least one query term."""
        wanted = [t for t in query_terms(query) if t in self.postings]
        if not wanted or not self.live:
            return {}
        average = self.total / self.live or 1.0
        out: dict[int, float] = {}
        for t in sorted(wanted):                  # one order of additions: the same sums everywhere
            idf = self.idf(t)
            for i, tf in self.postings[t].items():
                if i < len(mask) and mask[i]:
                    norm = K1 * (1 - B + B * self._lengths[i] / average)
                    out[i] = out.get(i, 0.0) + idf * tf * (K1 + 1) / (tf + norm)
        return out

    def search(self, query: str, k: int, mask: np.ndarray, id_at) -> list[tuple[bytes, float]]:
        """The k best rows by BM25 as (entry id, score), best first, ties by entry id (`id_at(row)`)."""
        found = sorted((-score, id_at(i)) for i, score in self.scores(query, mask).items())[:k]
        return [(entry_id, -neg) for neg, entry_id in found]
