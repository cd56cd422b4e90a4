"""The state a snapshot keeps and hands to a bootstrapping device is bounded (docs/compaction.md,
"Bounded preference state"): it must not hold one evidence row per covered event.

Found by tools/bench_compaction.py: `write_snapshot` used to dump the views before the snapshot
event folded the covered evidence into day summaries, so the `snapshots` database and the bundle held
the unsummarized evidence of the whole log and grew with every event ever written. The state it
signs now holds the summaries (folding the snapshot event afterwards finds nothing left to summarize).
"""

from __future__ import annotations

import random

from agentlog.log import payloads, snapshot
from agentlog.prefs import view as pref_view
from agentlog.store import compaction
from tests.helpers.family import DAY, HOUR, Family


def test_snapshot_state_holds_no_more_evidence_than_the_compacted_view(tmp_path):
    f = Family(tmp_path)
    try:
        rng = random.Random(1)
        for _ in range(20):
            for device in (f.laptop, f.phone):
                device.append_many([payloads.Observation(setting=f"s{i % 5}", value=rng.choice("abc"))
                                    for i in range(50)])
                f.later(5 * HOUR)
            f.meet()
            f.later(DAY - 10 * HOUR)
        for device in (f.laptop, f.phone):        # acknowledge the last meeting
            device.append(payloads.Observation(setting="s0", value="a"))
        f.meet()
        compaction.compact(f.laptop, now_ms=f.now)
        evidence = pref_view.DBS.index("views.pref.evidence")
        with f.laptop.raw_txn() as txn:
            live = txn.stat(f.laptop.db("views.pref.evidence"))["entries"]
        bundle = compaction.base_bundle(f.laptop)
        held = len(snapshot.rows(bundle.states["pref"], len(snapshot.VIEW_DBS["pref"]))[evidence])
        assert live < 1000, f"the compacted view keeps {live} evidence rows: the summaries did not apply"
        assert held <= live, f"the snapshot's pref state holds {held} evidence rows, the compacted view {live}"
    finally:
        f.close()
