"""`agentlog scrub`: overwrite the bytes LMDB freed in this home's store and, with --find, check that
given text is in no file under the home (docs/erasure.md). Erasing runs it on its own; this is the hand tool,
and it settles a pending scrub that status shows, as serve's retry would."""

from __future__ import annotations

from agentlog.cli.common import open_home, print_json, shown
from agentlog.cli.exits import EXIT_OK, EXIT_PROBLEMS
from agentlog.errors import UsageError


def register(sub, common) -> None:
    c = sub.add_parser("scrub", help="overwrite freed pages of the store; --find checks text is gone from the home")
    c.add_argument("--find", action="append", default=[], metavar="TEXT",
                   help="text that must be in no file under the home (repeatable; at least 8 bytes of UTF-8)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_scrub)


def cmd_scrub(args) -> int:
    from agentlog.progress import Progress
    from agentlog.store import scrub

    needles = [text.encode() for text in args.find]
    if any(len(n) < scrub.MIN_NEEDLE for n in needles):
        raise UsageError(f"--find needs at least {scrub.MIN_NEEDLE} bytes of text: shorter text matches by chance")
    with open_home(args) as store, Progress("scrub", enabled=not args.json) as progress:
        home = store.path.parent
        report = store.scrubber.run(needles, progress=lambda stage, done, total: progress.update(done, total))
    doc = report.as_dict()
    if args.json:
        print_json(doc)
        return EXIT_PROBLEMS if report.pending else EXIT_OK
    print(f"overwrote {report.pages} free pages in {report.rounds} rounds, rewrote {report.touched} pages "
          f"holding freed bytes, in {report.seconds:.1f} s")
    for path, offset in report.found:
        print(shown(f"cannot read {path}: nothing shows it clean" if offset < 0 else
                    f"still found: {path} at byte {offset} (still held by a record, or a long reader pins the "
                    "old pages: run it again later)"))
    if report.pinned:
        print(f"{report.pinned} reader(s) older than the last erasure still open: run it again later")
    if needles and not report.found:
        print(f"the text is in no file under {shown(str(home))}")
    return EXIT_PROBLEMS if report.pending else EXIT_OK
