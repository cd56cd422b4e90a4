"""`agentlog init` and `agentlog devices add|join|list|revoke`: this device's home, and the group's roster."""

from __future__ import annotations

import sys

from agentlog.cli import pair
from agentlog.cli.common import actions, open_home, print_json, shown


def register(sub, common) -> None:
    c = sub.add_parser("init", help="create this device's home and key, and a new group (or wait to --join one)")
    c.add_argument("--name", required=True, help="this device's name, e.g. laptop")
    c.add_argument("--join", action="store_true", help="do not create a group; print the device id to enrol elsewhere")
    c.set_defaults(func=cmd_init)

    d = actions(sub.add_parser("devices", help="enrol, join, list and revoke devices"), common)
    c = d.add_parser("add", help="enrol a new device and print its join token")
    c.add_argument("device_id")
    c.add_argument("--name", required=True)
    c.add_argument("--scopes", metavar="A,B",
                   help="sealed scopes it may read from the start (this device must read them)")
    c.set_defaults(func=cmd_devices_add)
    pair.register_invite(d)
    c = d.add_parser("join", help="join the group with a token from an enrolled device")
    c.add_argument("token")
    c.set_defaults(func=cmd_devices_join)
    c = d.add_parser("list", help="list the group's devices")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_devices_list)
    c = d.add_parser("revoke", help="stop accepting a device's future events")
    c.add_argument("device", metavar="NAME|ID")
    c.add_argument("--reason", default="")
    c.set_defaults(func=cmd_devices_revoke)


def cmd_init(args) -> int:
    from agentlog.store import home

    store = home.create(args.home, args.name)
    with store:
        if args.join:
            print(store.device.hex())
            print(f"device {args.name!r} created at {home.resolve(args.home)}; on an enrolled device run:\n"
                  f"  agentlog devices add {store.device.hex()} --name {args.name}", file=sys.stderr)
        else:
            store.create_group(args.name)
            print(f"created group {store.group.hex()[:16]} with device {args.name!r} ({store.device.hex()[:16]})")
    return 0


def cmd_devices_add(args) -> int:
    from agentlog.cli.scopes import scope_names
    from agentlog.store import devices

    device = devices.parse_device_id(args.device_id)
    scopes = scope_names(args.scopes) if args.scopes is not None else []
    with open_home(args) as store:
        token = devices.enroll_with_scopes(store, device, args.name, scopes)
    print(token)
    return 0


def cmd_devices_join(args) -> int:
    from agentlog.store import devices

    with open_home(args) as store:
        enrolment = devices.join(store, args.token)
        print(f"joined group {store.group.hex()[:16]} as '{shown(enrolment.name)}'")
    return 0


def cmd_devices_list(args) -> int:
    with open_home(args) as store:
        roster, heads = store.roster(), store.heads()
        rows = []
        for m in sorted(roster.enrolled_members(), key=lambda m: (m.name, m.device)):
            head = heads.get(m.device)
            rows.append({
                "name": m.name, "id": m.device.hex(), "this_device": m.device == store.device,
                "founder": m.device == roster.founder, "enrolled_by": roster.name_of(m.enrolled_by[0].author),
                "enrolled_at": {"author": m.enrolled_by[0].author.hex(), "seq": m.enrolled_by[0].seq},
                "status": "active" if m.active else "revoked", "until_seq": m.until_seq, "seq": head.seq if head else 0,
            })
    if args.json:
        print_json(rows)
        return 0
    for r in shown(rows):
        status = r["status"] if r["until_seq"] is None else f"revoked after seq {r['until_seq']}"
        mark = "*" if r["this_device"] else " "
        print(f"{mark} {r['name']:<16} {r['id'][:16]}  seq {r['seq']:<8} {status:<24} "
              f"enrolled by {r['enrolled_by']} at its seq {r['enrolled_at']['seq']}")
    return 0


def cmd_devices_revoke(args) -> int:
    from agentlog.store import devices

    with open_home(args) as store:
        revoked = devices.revoke(store, args.device, args.reason)
        name = shown(store.roster().name_of(revoked.device))
        print(f"revoked '{name}': events after its seq {revoked.until_seq} will be refused")
    return 0
