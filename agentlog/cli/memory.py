"""`agentlog memory put|get|update|delete|forget|merge|list|search|duplicates|conflicts|resolve|embedder`:
what the agent knows."""

from __future__ import annotations

import argparse
import json
import sys

from agentlog.cli.common import LINE_LIMIT, actions, iso, open_home, print_json, shown
from agentlog.errors import UsageError

CONTENT_LIMIT = 16 * 1024       # characters of a memory entry's content `memory get` shows (an API write's limit)
_MEMORY_TYPES = "fact, preference, decision, finding, context or conversation"


def register(sub, common) -> None:
    memory = actions(sub.add_parser("memory", help="put, update, delete, get, list and search what the agent knows"),
                     common)
    c = memory.add_parser("put", help="add an entry; prints its id")
    c.add_argument("text")
    c.add_argument("--type", default="fact", help=f"{_MEMORY_TYPES} (default fact)")
    c.add_argument("--tag", action="append", default=[], help="a label (repeat)")
    c.add_argument("--confidence", type=float, default=1.0, help="how sure the agent is, 0 to 1 (default 1)")
    c.add_argument("--scope", default="user",
                   help="default user (every device); any other, e.g. health, is a sealed scope only its readers read")
    _embedding_options(c)
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_memory_put)
    c = memory.add_parser("get", help="an entry as this device sees it, with its conflicts or its deletion")
    c.add_argument("id", metavar="ID", help="the id, or a unique prefix of at least 4 hex digits")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_memory_get)
    c = memory.add_parser("update", help="change some fields and tags of an entry; prints the update's event id")
    c.add_argument("id", metavar="ID")
    c.add_argument("--content")
    c.add_argument("--type", help=_MEMORY_TYPES)
    c.add_argument("--confidence", type=float, help="0 to 1")
    c.add_argument("--tag", action="append", default=[], metavar="+X|-X",
                   help="add (+X or X) or remove (-X) a tag (repeat)")
    c.add_argument("--add-tag", action="append", default=[], metavar="X")
    c.add_argument("--remove-tag", action="append", default=[], metavar="X")
    _embedding_options(c)
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_memory_update)
    c = memory.add_parser("delete", help="delete an entry on every device (final); prints the event id")
    c.add_argument("id", metavar="ID")
    c.add_argument("--reason", default="")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_memory_delete)
    c = memory.add_parser("forget", help="erase an entry's content from the whole history on every device; "
                                         "prints the erase request's id")
    c.add_argument("id", metavar="ID")
    c.add_argument("--reason", default="", help="why, in a few words (every device of the group reads it)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_memory_forget)
    c = memory.add_parser("list", help="entries, newest change first (! marks a conflict)")
    _memory_filters(c)
    c.add_argument("--deleted", action="store_true", help="list the deleted entries instead")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_memory_list)
    c = memory.add_parser("search", help="entries best matching a query: its words (BM25) and the embedder's "
                                         "vectors, fused (docs/memory.md)")
    c.add_argument("query")
    c.add_argument("--k", type=int, default=10, help="how many hits at most (default 10)")
    _memory_filters(c)
    how = c.add_mutually_exclusive_group()
    how.add_argument("--lexical", action="store_true", help="rank by the query's words alone (BM25)")
    how.add_argument("--vector", action="store_true", help="rank by the embedder's vectors alone")
    c.add_argument("--no-decay", action="store_true",
                   help="do not rank entries long unread and unchanged lower")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_memory_search)
    c = memory.add_parser("conflicts", help="entries whose fields hold concurrent values")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_memory_conflicts)
    c = memory.add_parser("resolve", help="settle a field's conflict with one value; prints the update's event id")
    c.add_argument("id", metavar="ID")
    c.add_argument("field", metavar="FIELD", help="type, content, confidence or embedding")
    c.add_argument("value", metavar="VALUE",
                   help="the value to keep (for embedding: the event id of the write to keep)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_memory_resolve)
    c = memory.add_parser("duplicates", help="pairs of entries that say nearly the same thing (merge them)")
    c.add_argument("--threshold", type=float, default=None,
                   help="the least similarity listed, above 0 and at most 1 (default 0.35)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_memory_duplicates)
    c = memory.add_parser("merge", help="fold entry B into entry A on every device: B's tags join A's, B is "
                                        "deleted pointing at A; prints the event id")
    c.add_argument("a", metavar="A", help="the entry that stays")
    c.add_argument("b", metavar="B", help="the entry merged into A")
    c.add_argument("--content", help="A's new content, saying what both said")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_memory_merge)
    c = memory.add_parser("embedder", help="the model this home's search embeds with; NAME sets it")
    c.add_argument("name", metavar="NAME", nargs="?",
                   help="agentlog-hash-384 (built in) or model2vec:DIRECTORY_OR_HUB_ID, "
                        "e.g. model2vec:minishlab/potion-base-8M (fetched once)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_memory_embedder)


def _memory_filters(c: argparse.ArgumentParser) -> None:
    c.add_argument("--type", help=_MEMORY_TYPES)
    c.add_argument("--tag", help="only entries with this tag")
    c.add_argument("--scope", help="only entries of this scope")


def _embedding_options(c: argparse.ArgumentParser) -> None:
    c.add_argument("--embedding", metavar="FILE", help="the entry's vector: a JSON list of numbers (- reads stdin)")
    c.add_argument("--model", help="the model that made --embedding (default: this home's embedder)")


def _read_embedding(path: str | None) -> list[float] | None:
    """The vector in the --embedding file (or stdin for -): a JSON list of numbers."""
    from pathlib import Path

    if path is None:
        return None
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read --embedding {path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        vector = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--embedding {path} is not JSON: {exc}") from None
    if not isinstance(vector, list) or not all(type(x) in (int, float) for x in vector):
        raise UsageError(f"--embedding {path} must hold a JSON list of numbers")
    return vector


# -- writing --------------------------------------------------------------------------------------------

def _memory_written(args, write) -> int:
    """Open the home, write with write(store.memory) -> (entry id, event id) and print the event id (or JSON)."""
    from agentlog.documents import author_names

    with open_home(args) as store:
        memory = store.memory
        entry_id, event = write(memory)
        doc = {"id": entry_id.hex(), "event": event.hex(), "entry": memory.get(entry_id).to_json(author_names(store))}
    print(json.dumps(doc, indent=2) if args.json else doc["event"])
    return 0


def cmd_memory_put(args) -> int:
    from agentlog.documents import author_names

    if not args.scope:
        raise UsageError("--scope cannot be empty")
    embedding = _read_embedding(args.embedding)
    with open_home(args) as store:
        memory = store.memory
        entry_id = memory.put(args.text, type=args.type, tags=args.tag, confidence=args.confidence, scope=args.scope,
                              embedding=embedding, model=args.model)
        doc = {"id": entry_id.hex(), "entry": memory.get(entry_id).to_json(author_names(store))}
    print(json.dumps(doc, indent=2) if args.json else doc["id"])
    return 0


def cmd_memory_update(args) -> int:
    adds, removes = list(args.add_tag), list(args.remove_tag)
    for tag in args.tag:
        (removes if tag.startswith("-") else adds).append(tag[1:] if tag[:1] in "+-" else tag)
    embedding = _read_embedding(args.embedding)

    def write(memory):
        entry_id = memory.id(args.id)
        return entry_id, memory.update(entry_id, content=args.content, type=args.type, confidence=args.confidence,
                                       add_tags=adds, remove_tags=removes, embedding=embedding, model=args.model)
    return _memory_written(args, write)


def cmd_memory_delete(args) -> int:
    def write(memory):
        entry_id = memory.id(args.id)
        return entry_id, memory.delete(entry_id, args.reason)
    return _memory_written(args, write)


def cmd_memory_merge(args) -> int:
    def write(memory):
        keep, gone = memory.id(args.a), memory.id(args.b)
        return keep, memory.merge(keep, gone, args.content)
    return _memory_written(args, write)


def cmd_memory_forget(args) -> int:
    from agentlog.cli.forget import print_requests

    with open_home(args) as store:
        memory = store.memory
        entry_id = memory.id(args.id)
        request = memory.forget(entry_id, args.reason)
    print_requests(args, [request], {"id": entry_id.hex()})
    return 0


def cmd_memory_resolve(args) -> int:
    def write(memory):
        entry_id = memory.id(args.id)
        return entry_id, memory.resolve(entry_id, args.field, args.value)
    return _memory_written(args, write)


def cmd_memory_embedder(args) -> int:
    with open_home(args) as store:
        if args.name is None:
            embedder = store.memory.embedder
        else:
            try:
                embedder = store.memory.use_embedder(args.name)
            except (OSError, ValueError) as exc:
                raise UsageError(f"cannot load the embedding model {args.name!r}: {exc}") from None
    doc = {"name": embedder.name, "dim": embedder.dim, "meaning": embedder.meaning}
    if args.json:
        print_json(doc)
    elif args.name is None:
        print(f"{doc['name']} ({doc['dim']} dimensions)")
    else:
        print(f"this home now searches with {doc['name']} ({doc['dim']} dimensions); "
              "the next search embeds every entry again")
    return 0


# -- reading --------------------------------------------------------------------------------------------

def cmd_memory_get(args) -> int:
    from agentlog.documents import entry_doc

    with open_home(args) as store:
        doc = entry_doc(store, args.id)
    if args.json:
        print_json(doc)
        return 0
    conflicts = _conflict_lines(doc)
    doc = {**shown(doc), "content": shown(doc["content"], CONTENT_LIMIT)}
    print(f"id          {doc['id']}")
    if not doc["deleted"]:
        print(f"type        {doc['type']}")
        print(f"content     {doc['content']}")
        print(f"tags        {', '.join(doc['tags']) or '-'}")
        print(f"confidence  {doc['confidence']:.2f}")
    print(f"scope       {doc['scope']}")
    print(f"put by      {doc['device']} at {iso(doc['created_ms'])}")
    for d in doc["deleted"]:
        print(_deleted_line(d))
    if doc["merged_into"]:
        print(f"merged into {doc['merged_into']} (agentlog memory get {doc['merged_into'][:12]})")
    if doc["deleted"]:
        return 0
    print(f"updated     {iso(doc['updated_ms'])}")
    print(f"embedding   {doc['embedding_model'] or 'none given (the search index embeds the content)'}")
    for line in conflicts:
        print(line)
    return 0


def _deleted_line(d: dict) -> str:
    return f"deleted by {d['device']} at {iso(d['time_ms'])}" + (f": {d['value']}" if d["value"] else "")


def _conflict_lines(doc: dict) -> list[str]:
    """Each field in conflict with all its standing values, the shown one (the winner) first and marked;
    from the doc as stored, each line made printable."""
    lines = []
    for name, candidates in doc["conflicts"].items():
        lines.append(f"conflict in {name}: {len(candidates)} standing values")
        for i, c in enumerate(candidates):
            mark = "shown" if i == 0 else "     "
            lines.append(f"  {mark}  {json.dumps(c['value'], ensure_ascii=False)}  by {c['device']}, "
                         f"lamport {c['lamport']}, {iso(c['time_ms'])}, event {c['event'][:16]}")
    return shown(lines, LINE_LIMIT)


def _snippet(text: str, width: int = 60) -> str:
    """The text on one line, cut to `width` characters."""
    line = " ".join(text.split())
    return line if len(line) <= width else line[:width - 1] + "…"


def _entry_row(doc: dict) -> str:
    if doc["deleted"]:
        return f"  {doc['id'][:12]}  {_deleted_line(doc['deleted'][0])}"
    mark = "!" if doc["conflicts"] else " "
    return f"{mark} {doc['id'][:12]}  {doc['type']:<12} {','.join(doc['tags']) or '-':<16} {_snippet(doc['content'])}"


def cmd_memory_list(args) -> int:
    from agentlog.documents import author_names

    with open_home(args) as store:
        names = author_names(store)
        docs = [e.to_json(names) for e in store.memory.list(type=args.type, tag=args.tag, scope=args.scope,
                                                              deleted=args.deleted)]
    if args.json:
        print_json(docs)
        return 0
    if not docs:
        print("no deleted entries" if args.deleted else "no entries", file=sys.stderr)
    for doc in shown(docs):
        print(_entry_row(doc))
    return 0


_RANKED = {"hybrid": "its words and vectors fused", "lexical": "its words alone", "vector": "vectors alone"}


def _search_notes(found) -> list[str]:
    """What the search did with entries it could not rank by their own embedding."""
    notes = []
    if found.reembedded:
        one = found.reembedded == 1
        notes.append(f"{found.reembedded} {'entry' if one else 'entries'} embedded by another model "
                     f"{'was' if one else 'were'} embedded again with {found.model}")
    if found.excluded:
        one = found.excluded == 1
        notes.append(f"{found.excluded} {'entry' if one else 'entries'} left out: {'its' if one else 'their'} "
                     f"embedding claims model {found.model} but has the wrong size")
    return notes


def cmd_memory_search(args) -> int:
    from agentlog.documents import author_names

    with open_home(args) as store:
        names = author_names(store)
        ranking = "lexical" if args.lexical else "vector" if args.vector else "hybrid"
        found = store.memory.search(args.query, args.k, type=args.type, tag=args.tag, scope=args.scope,
                                    ranking=ranking, decay=not args.no_decay)
    hits = [{"entry": h.entry.to_json(names), "score": round(h.score, 6)} for h in found.hits]
    if args.json:
        print_json({"hits": hits, "model": found.model, "mode": found.mode, "ranking": found.ranking,
                    "decay": found.decay, "searched": found.searched, "reembedded": found.reembedded,
                    "excluded": found.excluded})
        return 0
    print(f"agentlog: note: mode {found.mode}: ranked by {_RANKED[found.ranking]} ({found.model}"
          f"{'' if found.decay else ', no decay'})", file=sys.stderr)
    for h in shown(hits):
        print(f"{h['score']:6.3f} {_entry_row(h['entry'])}")
    for note in _search_notes(found) if found.ranking != "lexical" else ():
        print(f"agentlog: note: {note}", file=sys.stderr)
    if not hits:
        print(f"no match among {found.searched} {'entry' if found.searched == 1 else 'entries'}", file=sys.stderr)
    return 0


def cmd_memory_duplicates(args) -> int:
    from agentlog.documents import author_names
    from agentlog.memory.tidy import DEFAULT_THRESHOLD

    threshold = DEFAULT_THRESHOLD if args.threshold is None else args.threshold
    with open_home(args) as store:
        names = author_names(store)
        found = store.memory.duplicates(threshold)
        docs = [{"a": a.to_json(names), "b": b.to_json(names), "similarity": round(score, 6)} for a, b, score in found]
    if args.json:
        print_json(docs)
        return 0
    if not docs:
        print(f"no pairs at or over similarity {threshold}", file=sys.stderr)
    for doc in shown(docs):
        print(f"{doc['similarity']:.3f}")
        print(f"  {_entry_row(doc['a'])}")
        print(f"  {_entry_row(doc['b'])}")
    return 0


def cmd_memory_conflicts(args) -> int:
    from agentlog.documents import author_names

    with open_home(args) as store:
        names = author_names(store)
        docs = [e.to_json(names) for e in store.memory.conflicts()]
    if args.json:
        print_json(docs)
        return 0
    if not docs:
        print("no conflicts")
    for doc in docs:
        print(_entry_row(shown(doc)))
        for line in _conflict_lines(doc):
            print(f"    {line}")
    return 0
