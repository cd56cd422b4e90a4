@0xbc5eceeda1ff12bb;
# The signed event header. Its exact bytes are hashed (BLAKE2b-256) to give the
# event id, and the id is signed with Ed25519 by `author`. The header commits to
# the payload only through payloadHash/payloadLen, so a payload may be withheld,
# sealed or erased while every chain still verifies. See docs/format.md.

struct Header {
  formatVersion @0 :UInt16;     # 1 for this layout; readers reject unknown versions
  group @1 :Data;               # 32-byte group id: events cannot be replayed into another group
  author @2 :Data;              # 32-byte Ed25519 public key of the writing device
  epoch @3 :UInt32;             # 0, or higher after the author recovered from a fork
  seq @4 :UInt64;               # 1, 2, 3 ... dense along the author's chain
  prev @5 :Data;                # id of the author's previous event; 32 zero bytes at seq 1
  lamport @6 :UInt64;           # max lamport seen + 1
  clock @7 :List(ClockEntry);   # heads of other authors newly seen since the author's previous event
  time @8 :Int64;               # author's wall clock, ms since the Unix epoch; informational
  scope @9 :Text;               # "user", "device:<hex id>", "topic:<name>"
  kind @10 :Text;               # "observation", "memory.put", ... (see payloads.capnp)
  payloadHash @11 :Data;        # BLAKE2b-256 of the payload bytes
  payloadLen @12 :UInt32;       # length of the payload bytes
  payloadCodec @13 :PayloadCodec;
}

struct ClockEntry {
  author @0 :Data;              # 32-byte device key
  epoch @1 :UInt32;
  seq @2 :UInt64;               # highest seq of that author seen (contiguously)
}

enum PayloadCodec {
  plain @0;                     # payload is the kind's Cap'n Proto struct
  sealed @1;                    # payload is that struct encrypted with the group key (relays can't read)
}
