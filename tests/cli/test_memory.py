"""The memory commands as an agent runs them: the real `agentlog` console script on real homes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agentlog.cli import main as cli
from agentlog.cli import memory as cli_memory
from agentlog.memory import reducer as mr
from agentlog.memory.api import SearchResult
from agentlog.memory.embedding import DEFAULT_EMBEDDER, embedder_for
from agentlog.store import devices, home
from tests.helpers.cli import assert_one_line_error
from tests.helpers.models import tiny_model
from tests.helpers.sync import sync

SCRIPT = Path(sys.executable).with_name("agentlog")
AGENTLOG = [str(SCRIPT)] if SCRIPT.is_file() else [sys.executable, "-m", "agentlog"]
ENV = {k: v for k, v in os.environ.items() if k != "AGENTLOG_HOME"}
HEX = set("0123456789abcdef")


def run(home_dir, *args, check=True, stdin=None):
    proc = subprocess.run([*AGENTLOG, "--home", str(home_dir), *args], capture_output=True, text=True, env=ENV,
                          input=stdin, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"agentlog {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


def out(home_dir, *args, stdin=None) -> str:
    return run(home_dir, *args, stdin=stdin).stdout.strip()


def as_json(home_dir, *args, stdin=None):
    return json.loads(out(home_dir, *args, "--json", stdin=stdin))


def fingerprint(home_dir) -> tuple:
    """What a refused command must leave alone: the event count, every view's digest, the embedder setting."""
    with home.open_home(home_dir) as store:
        return store.count(), {name: v["digest"] for name, v in store.views().items()}, store.meta("embedder")


def exchange(a, b) -> None:
    """Both homes hold every event of both, as after a sync each way."""
    with home.open_home(a) as first, home.open_home(b) as second:
        sync(first, second)
        sync(second, first)


@pytest.fixture
def laptop(tmp_path):
    h = tmp_path / "laptop"
    run(h, "init", "--name", "laptop")
    return h


def test_put_get_update_round_trip(laptop):
    put = as_json(laptop, "memory", "put", "the user prefers dark mode in the editor", "--type", "preference",
                  "--tag", "ui", "--tag", "editor", "--confidence", "0.8", "--scope", "topic:editor")
    entry_id, entry = put["id"], put["entry"]
    assert len(entry_id) == 32 and set(entry_id) <= HEX and entry["id"] == entry_id
    assert (entry["type"], entry["content"], entry["tags"], entry["confidence"], entry["scope"]) == (
        "preference", "the user prefers dark mode in the editor", ["editor", "ui"], 0.8, "topic:editor")
    assert (entry["device"], entry["embedding_model"], entry["deleted"], entry["conflicts"]) == ("laptop", None, [], {})
    status = as_json(laptop, "status")
    assert entry["author"] == status["device"] and entry["created_ms"] == entry["updated_ms"] > 0
    assert as_json(laptop, "memory", "get", entry_id) == entry
    assert as_json(laptop, "memory", "get", entry_id[:4].upper()) == entry

    text = out(laptop, "memory", "get", entry_id[:6]).splitlines()
    assert text[0] == f"id          {entry_id}" and text[1] == "type        preference"
    assert text[2] == "content     the user prefers dark mode in the editor" and text[3] == "tags        editor, ui"
    assert text[4] == "confidence  0.80" and text[5] == "scope       topic:editor"
    assert text[6].startswith("put by      laptop at 20") and text[6].endswith("Z")
    assert text[8].startswith("embedding   none given") and len(text) == 9

    event = out(laptop, "memory", "update", entry_id[:8], "--tag", "-ui", "--tag", "+night", "--add-tag", "-odd",
                "--content", "dark mode at night", "--type", "fact", "--confidence", "0.5")
    log = as_json(laptop, "log")
    assert log[-1]["id"] == event and log[-1]["kind"] == "memory.update" and log[-1]["scope"] == "topic:editor"
    got = as_json(laptop, "memory", "get", entry_id)
    assert (got["type"], got["content"], got["tags"], got["confidence"]) == ("fact", "dark mode at night",
                                                                             ["-odd", "editor", "night"], 0.5)
    assert got["updated_ms"] >= got["created_ms"] == entry["created_ms"]

    updated = as_json(laptop, "memory", "update", entry_id, "--remove-tag", "-odd", "--tag=-night", "--tag", "plain")
    assert updated["id"] == entry_id and len(updated["event"]) == 64 and updated["entry"]["tags"] == ["editor", "plain"]
    assert updated["entry"] == as_json(laptop, "memory", "get", entry_id)

    dashed = out(laptop, "memory", "put", "--", "-5 degrees is cold for the user")
    assert as_json(laptop, "memory", "get", dashed)["content"] == "-5 degrees is cold for the user"

    after = as_json(laptop, "status")
    assert after["views"]["memory"]["version"] == mr.VERSION and after["events"] == 6   # + topic:editor's scope.key
    assert after["views"]["memory"]["digest"] != status["views"]["memory"]["digest"]
    assert f"view memory v{mr.VERSION} digest {after['views']['memory']['digest'][:16]}" in out(laptop, "status")


def test_list_search_and_filters(laptop):
    ids = {}
    for key, text, kind, tags in [
        ("dark", "the user prefers dark mode in the code editor", "preference", ["ui"]),
        ("birthday", "Anna's birthday is on 3 May", "fact", ["family"]),
        ("build", "the build uses Python 3.11 and LMDB", "finding", ["dev"]),
        ("budget", "meeting notes about the budget for the editor licence", "context", ["work", "ui"]),
    ]:
        ids[key] = out(laptop, "memory", "put", text, "--type", kind, *[a for t in tags for a in ("--tag", t)])

    listed = as_json(laptop, "memory", "list")
    assert [e["id"] for e in listed] == [ids[k] for k in ("budget", "build", "birthday", "dark")]
    assert [e["id"] for e in as_json(laptop, "memory", "list", "--tag", "ui")] == [ids["budget"], ids["dark"]]
    assert [e["id"] for e in as_json(laptop, "memory", "list", "--type", "fact")] == [ids["birthday"]]
    assert as_json(laptop, "memory", "list", "--scope", "topic:none") == []
    rows = out(laptop, "memory", "list").splitlines()
    assert len(rows) == 4 and rows[0].split()[:3] == [ids["budget"][:12], "context", "ui,work"]
    assert rows[3].startswith(f"  {ids['dark'][:12]}  preference") and rows[3].endswith("the code editor")

    found = as_json(laptop, "memory", "search", "dark mode editor")
    assert (found["model"], found["mode"], found["ranking"], found["searched"], found["reembedded"],
            found["excluded"]) == (DEFAULT_EMBEDDER, "lexical", "hybrid", 4, 0, 0)   # hashed words: no meaning
    scores = [h["score"] for h in found["hits"]]
    assert found["hits"][0]["entry"]["id"] == ids["dark"] and scores == sorted(scores, reverse=True) and scores[0] > 0
    assert found["hits"][0]["entry"] == as_json(laptop, "memory", "get", ids["dark"])
    assert [h["entry"]["id"] for h in as_json(laptop, "memory", "search", "dark mode editor", "--k", "1")["hits"]] == [
        ids["dark"]
    ]
    by_type = as_json(laptop, "memory", "search", "dark mode editor", "--type", "context")
    assert [h["entry"]["id"] for h in by_type["hits"]] == [ids["budget"]] and by_type["searched"] == 1
    assert ids["dark"] not in {
        h["entry"]["id"] for h in as_json(laptop, "memory", "search", "dark mode", "--tag", "family")["hits"]
    }

    lexical = as_json(laptop, "memory", "search", "birthdays", "--lexical")
    assert lexical["mode"] == "lexical" and [h["entry"]["id"] for h in lexical["hits"]] == [ids["birthday"]]
    assert {h["entry"]["id"] for h in as_json(laptop, "memory", "search", "editor", "--lexical")["hits"]} == {
        ids["dark"],
        ids["budget"],
    }
    assert [
        h["entry"]["id"]
        for h in as_json(laptop, "memory", "search", "editor", "--lexical", "--type", "context")["hits"]
    ] == [ids["budget"]]
    table = run(laptop, "memory", "search", "dark mode editor")
    first = table.stdout.splitlines()[0]
    assert first.split()[1:3] == [ids["dark"][:12], "preference"] and float(first.split()[0]) == pytest.approx(
        scores[0], abs=1e-3
    )
    none = run(laptop, "memory", "search", "zebra", "--lexical")
    assert none.stdout == "" and none.stderr.splitlines() == [
        f"agentlog: note: mode lexical: ranked by its words alone ({DEFAULT_EMBEDDER})", "no match among 4 entries"]


def test_embeddings_given_with_an_entry(laptop, tmp_path):
    vector = embedder_for(DEFAULT_EMBEDDER).embed(["the user likes tea"])[0].tolist()
    (tmp_path / "v.json").write_text(json.dumps(vector))
    own = as_json(laptop, "memory", "put", "the user likes tea", "--embedding", str(tmp_path / "v.json"))
    assert own["entry"]["embedding_model"] == DEFAULT_EMBEDDER
    other = as_json(laptop, "memory", "put", "the user likes green tea", "--embedding", "-", "--model", "my-model",
                    stdin=json.dumps([0.5] * 10))
    assert other["entry"]["embedding_model"] == "my-model"
    assert "my-model" in out(laptop, "memory", "get", other["id"]).splitlines()[8]

    found = as_json(laptop, "memory", "search", "tea")
    assert (found["searched"], found["reembedded"], found["excluded"]) == (2, 1, 0)
    assert {h["entry"]["id"] for h in found["hits"]} == {own["id"], other["id"]}
    proc = run(laptop, "memory", "search", "tea")
    assert proc.stderr.splitlines()[1:] == [f"agentlog: note: 1 entry embedded by another model was embedded again "
                                            f"with {DEFAULT_EMBEDDER}"]
    assert len(run(laptop, "memory", "search", "tea", "--lexical").stderr.splitlines()) == 1

    again = as_json(laptop, "memory", "update", own["id"], "--embedding", "-", "--model", "my-model",
                    stdin=json.dumps([0.1] * 3))
    assert again["entry"]["embedding_model"] == "my-model"
    assert out(laptop, "memory", "embedder") == f"{DEFAULT_EMBEDDER} (384 dimensions)"
    assert as_json(laptop, "memory", "embedder", DEFAULT_EMBEDDER) == {"name": DEFAULT_EMBEDDER, "dim": 384,
                                                                        "meaning": False}
    with home.open_home(laptop) as store:
        assert store.meta("embedder") == DEFAULT_EMBEDDER.encode()


def test_search_notes_name_the_counts():
    notes = cli_memory._search_notes(SearchResult((), "m-384", "semantic", 9, reembedded=3, excluded=1))
    assert notes == ["3 entries embedded by another model were embedded again with m-384",
                     "1 entry left out: its embedding claims model m-384 but has the wrong size"]
    assert cli_memory._search_notes(SearchResult((), "m", "semantic", 2, reembedded=0, excluded=2)) == [
        "2 entries left out: their embedding claims model m but has the wrong size"]


def test_dash_values_join_their_option():
    assert cli._attach_dash_values(["memory", "update", "abcd", "--tag", "-x", "--tag", "+y", "--reason", "-r"]) == [
        "memory", "update", "abcd", "--tag=-x", "--tag", "+y", "--reason=-r"]
    assert cli._attach_dash_values(["--tag", "--json", "--", "--tag", "-x"]) == ["--tag", "--json", "--", "--tag", "-x"]


def test_id_prefixes(laptop):
    seen = {}
    with home.open_home(laptop) as store:
        while True:
            entry_id = store.memory.put(f"entry {len(seen)}").hex()
            if entry_id[:4] in seen:
                break
            seen[entry_id[:4]] = entry_id
    twin = seen[entry_id[:4]]
    differ = next(i for i in range(32) if entry_id[i] != twin[i])
    assert_one_line_error(run(laptop, "memory", "get", entry_id[:4], check=False), "ambiguous", entry_id[:4])
    assert as_json(laptop, "memory", "get", entry_id[:differ + 1])["id"] == entry_id
    assert as_json(laptop, "memory", "get", twin[:differ + 1])["id"] == twin
    unknown = next(f"{n:04x}" for n in range(1 << 16) if f"{n:04x}" not in seen and f"{n:04x}" != entry_id[:4])
    assert_one_line_error(
        run(laptop, "memory", "get", unknown, check=False), f"no memory whose id starts with {unknown}"
    )
    assert_one_line_error(run(laptop, "memory", "get", "abc", check=False), "4 to 32 hex digits")


def test_delete_is_reported_by_get_and_list(laptop):
    kept = out(laptop, "memory", "put", "the user's cat is called Tom")
    gone = out(laptop, "memory", "put", "the user's old address", "--tag", "home")
    event = out(laptop, "memory", "delete", gone[:6], "--reason", "user asked to forget it")
    last = as_json(laptop, "log")[-1]
    assert (last["id"], last["kind"]) == (event, "memory.delete")
    proc = run(laptop, "memory", "get", gone)
    assert proc.returncode == 0 and proc.stderr == ""
    deleted = [line for line in proc.stdout.splitlines() if line.startswith("deleted by ")]
    assert (
        len(deleted) == 1
        and deleted[0].startswith("deleted by laptop at 20")
        and deleted[0].endswith("Z: user asked to forget it")
    )
    doc = as_json(laptop, "memory", "get", gone)
    assert [(d["device"], d["value"], d["event"]) for d in doc["deleted"]] == [
        ("laptop", "user asked to forget it", event)
    ]
    assert [e["id"] for e in as_json(laptop, "memory", "list")] == [kept]
    assert [e["id"] for e in as_json(laptop, "memory", "list", "--deleted")] == [gone]
    assert out(laptop, "memory", "list", "--deleted") == f"{gone[:12]}  {deleted[0]}"
    assert [h["entry"]["id"] for h in as_json(laptop, "memory", "search", "address", "--lexical")["hits"]] == []


def test_conflict_between_two_devices_is_shown_alike_and_resolved(tmp_path):
    lp, ph = tmp_path / "laptop", tmp_path / "phone"
    with home.create(lp, "laptop") as laptop_store:
        laptop_store.create_group("laptop")
        with home.create(ph, "phone") as phone_store:
            devices.join(phone_store, devices.enroll(laptop_store, phone_store.device, "phone"))
    entry = out(lp, "memory", "put", "Anna's birthday is 2 May", "--tag", "family")
    exchange(lp, ph)
    out(lp, "memory", "update", entry[:8], "--content", "Anna's birthday is 3 May")
    out(ph, "memory", "update", entry[:8], "--content", "Anna's birthday is 4 May", "--confidence", "0.6")
    assert out(ph, "memory", "conflicts") == "no conflicts"
    exchange(lp, ph)

    seen = {name: as_json(h, "memory", "conflicts") for name, h in (("laptop", lp), ("phone", ph))}
    assert seen["laptop"] == seen["phone"] and len(seen["laptop"]) == 1
    [doc] = seen["laptop"]
    assert doc["id"] == entry and list(doc["conflicts"]) == ["content"] and doc["confidence"] == 0.6
    candidates = doc["conflicts"]["content"]
    assert {(c["device"], c["value"]) for c in candidates} == {("laptop", "Anna's birthday is 3 May"),
                                                              ("phone", "Anna's birthday is 4 May")}
    assert candidates[0] == max(candidates, key=lambda c: (c["lamport"], bytes.fromhex(c["author"])))
    assert doc["content"] == candidates[0]["value"] and as_json(lp, "memory", "get", entry) == doc
    text = out(ph, "memory", "get", entry).splitlines()
    assert "conflict in content: 2 standing values" in text
    shown = [line for line in text if line.startswith("  shown  ")]
    assert (
        len(shown) == 1
        and json.dumps(candidates[0]["value"]) in shown[0]
        and f"by {candidates[0]['device']}," in shown[0]
    )
    assert out(ph, "memory", "list").startswith(f"! {entry[:12]}")
    table = out(lp, "memory", "conflicts").splitlines()
    assert table[0].startswith(f"! {entry[:12]}") and len(table) == 4 and "shown" in table[2]

    resolved = as_json(ph, "memory", "resolve", entry[:8], "content", "Anna's birthday is 3 May")
    assert resolved["entry"]["conflicts"] == {} and len(resolved["event"]) == 64
    exchange(lp, ph)
    got = {h: as_json(h, "memory", "get", entry) for h in (lp, ph)}
    assert got[lp] == got[ph] and (got[lp]["content"], got[lp]["confidence"]) == ("Anna's birthday is 3 May", 0.6)
    assert as_json(lp, "memory", "conflicts") == as_json(ph, "memory", "conflicts") == []

    out(lp, "memory", "delete", entry, "--reason", "wrong person")
    out(ph, "memory", "update", entry, "--tag", "+friend")
    exchange(lp, ph)
    for h in (lp, ph):
        assert any(line.startswith("deleted by laptop at ") and line.endswith(": wrong person")
                   for line in out(h, "memory", "get", entry).splitlines())
    assert_one_line_error(run(ph, "memory", "update", entry, "--tag", "+x", check=False), "was deleted")
    assert fingerprint(lp)[:2] == fingerprint(ph)[:2]


def test_help_names_every_type(laptop):
    assert all(t in " ".join(out(laptop, "memory", "put", "--help").split()) for t in mr.TYPES)


@pytest.fixture(scope="module")
def refusals_home(tmp_path_factory):
    """One home for the refusals: an entry, a deleted entry, bad embedding files, and what must not change."""
    d = tmp_path_factory.mktemp("memory-refusals")
    h = d / "h"
    run(h, "init", "--name", "laptop")
    entry = out(h, "memory", "put", "the user prefers dark mode", "--tag", "ui")
    deleted = out(h, "memory", "put", "something to forget")
    out(h, "memory", "delete", deleted)
    (d / "ten.json").write_text(json.dumps([0.1] * 10))
    (d / "notjson.json").write_text("0.1, 0.2, 0.3\n")
    (d / "strings.json").write_text('["a", "b"]')
    unknown = next(p for p in ("0000", "ffff", "1234") if not entry.startswith(p) and not deleted.startswith(p))
    names = {"{E}": entry, "{D}": deleted, "{U}": unknown, "{dir}": str(d)}
    return h, names, fingerprint(h)


@pytest.mark.parametrize("args, words", [
    (("get", "{U}"), ("no memory whose id starts with {U}",)),
    (("get", "{U}" * 8), ("no memory {U}",)),
    (("get", "xyz!"), ("4 to 32 hex digits",)),
    (("update", "{U}", "--content", "x"), ("no memory whose id starts with {U}",)),
    (("put", ""), ("empty",)),
    (("put", "x" * (mr.MAX_CONTENT_BYTES + 1)), (f"{mr.MAX_CONTENT_BYTES + 1} bytes", str(mr.MAX_CONTENT_BYTES))),
    (("put", "x", "--type", "opinion"), ("memory type 'opinion'",)),
    (("put", "x", "--confidence", "1.5"), ("confidence 1.5",)),
    (("put", "x", "--confidence", "high"), ("--confidence", "high")),
    (("put", "x", "--embedding", "{dir}/ten.json"), ("10 dimensions", "384")),
    (("put", "x", "--embedding", "{dir}/notjson.json"), ("notjson.json is not JSON",)),
    (("put", "x", "--embedding", "{dir}/strings.json"), ("list of numbers",)),
    (("put", "x", "--embedding", "{dir}/missing.json"), ("cannot read", "missing.json")),
    (("put", "x", "--model", "m"), ("model name goes with an embedding",)),
    (("put", "x", "--tag", "a b"), ("tag 'a b'",)),
    (("put", "x", "--tag", "a", "--tag", "a"), ("twice",)),
    (("put", "x", "--scope", ""), ("--scope",)),
    (("put", "x", "--scope", "s" * 300), ("scope",)),
    (("update", "{E}"), ("nothing to update",)),
    (("update", "{E}", "--tag", "-nosuch"), ("no tag 'nosuch'",)),
    (("update", "{E}", "--tag", "+ui", "--tag", "-ui"), ("both added and removed",)),
    (("update", "{E}", "--content", " "), ("empty",)),
    (("update", "{E}", "--confidence", "-0.5"), ("confidence -0.5",)),
    (("resolve", "{E}", "content", "x"), ("content has no conflict",)),
    (("resolve", "{E}", "colour", "x"), ("field 'colour'",)),
    (("update", "{D}", "--content", "x"), ("{D} was deleted",)),
    (("delete", "{D}"), ("was deleted",)),
    (("resolve", "{D}", "content", "x"), ("was deleted",)),
    (("delete", "{E}", "--reason", "r" * (mr.MAX_REASON_LEN + 1)), ("reason",)),
    (("search", " "), ("query",)),
    (("search", "x", "--k", "0"), ("k must be",)),
    (("search", "x", "--type", "opinion"), ("memory type",)),
    (("list", "--type", "opinion"), ("memory type",)),
    (("embedder", ""), ("non-empty",)),
    (("embedder", "sentence-transformers/all-MiniLM-L6-v2"), ("unknown embedder", "model2vec:")),
    (("embedder", "model2vec:{dir}/no-such-model"), ("no model directory", "no-such-model")),
    (("embedder", "model2vec:{dir}"), ("cannot load the embedding model",)),
    (("merge", "{E}", "{E}"), ("cannot be merged into itself",)),
    (("merge", "{E}", "{D}"), ("{D} was deleted",)),
    (("merge", "{E}", "{U}"), ("no memory whose id starts with {U}",)),
    (("duplicates", "--threshold", "0"), ("threshold 0.0",)),
    (("search", "x", "--lexical", "--vector"), ("not allowed with",)),
])
def test_bad_input_is_one_line_and_changes_nothing(refusals_home, args, words):
    h, names, before = refusals_home

    def filled(text: str) -> str:
        for key, value in names.items():
            text = text.replace(key, value)
        return text
    proc = run(h, "memory", *map(filled, args), check=False)
    not_found = words[0].startswith("no memory ")
    assert proc.returncode == (4 if not_found else 2) and proc.stdout == ""
    assert_one_line_error(proc, *map(filled, words))
    assert fingerprint(h) == before


def test_duplicates_merge_and_a_model2vec_embedder(laptop, tmp_path):
    a = out(laptop, "memory", "put", "Prefers aisle seats on flights", "--tag", "travel")
    b = out(laptop, "memory", "put", "Prefers an aisle seat on flights", "--tag", "seats")
    [pair] = as_json(laptop, "memory", "duplicates")
    assert {pair["a"]["id"], pair["b"]["id"]} == {a, b} and pair["similarity"] >= 0.6
    merged = as_json(laptop, "memory", "merge", a[:8], b[:8], "--content", "Prefers aisle seats, on every flight")
    assert (merged["id"], merged["entry"]["tags"]) == (a, ["seats", "travel"])
    shown_b = out(laptop, "memory", "get", b).splitlines()
    assert f"merged into {a} (agentlog memory get {a[:12]})" in shown_b
    model = tiny_model(tmp_path / "tiny")
    chosen = as_json(laptop, "memory", "embedder", f"model2vec:{model}")
    assert chosen["name"].startswith("model2vec:tiny@") and (chosen["dim"], chosen["meaning"]) == (8, True)
    found = as_json(laptop, "memory", "search", "window seat on the plane")
    assert (found["mode"], found["ranking"], [h["entry"]["id"] for h in found["hits"]]) == ("hybrid", "hybrid", [a])
