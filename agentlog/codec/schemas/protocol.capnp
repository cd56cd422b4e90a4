@0xd3b1c9a07e5f4a21;
# The replication protocol between two devices (docs/protocol.md).
# Frontier and range lists are packed into Data (fixed-size big-endian records) so an
# in-sync round costs a few bytes per author, not a pointer and a struct per entry.

# --- handshake --------------------------------------------------------------

struct ClientHello {                 # client -> server, in the clear
  magic @0 :Text;                    # "agentlog"
  version @1 :UInt16;                # 1
  groupTag @2 :Data;                 # BLAKE2b-256(key = group secret, "agentlog group tag v1")
  ephemeral @3 :Data;                # X25519 public key (32), fresh per connection
}

struct ServerHello {                 # server -> client, in the clear
  version @0 :UInt16;
  ephemeral @1 :Data;
}

struct Auth {                        # each way, encrypted: who I am, bound to this connection
  device @0 :Data;                   # Ed25519 public key (32)
  signature @1 :Data;                # over BLAKE2b-256(role label ++ transcript hash)
}

struct Refusal {                     # either way, then close
  reason @0 :Text;
}

# --- pairing (docs/pairing.md) ------------------------------------------------
# A pairing connection's first frame carries flags 0x04 (FLAG_PAIR) instead of a ClientHello's 0x00.

struct PairHello {                   # joiner -> inviter, in the clear
  magic @0 :Text;                    # "agentlog"
  version @1 :UInt16;                # 1
  slot @2 :UInt16;                   # the code's public slot: which pending invite
  pake @3 :Data;                     # SPAKE2 message, side A (33)
}

struct PairReply {                   # inviter -> joiner, in the clear
  pake @0 :Data;                     # SPAKE2 message, side B (33)
  confirm @1 :Data;                  # 32: keyed with the SPAKE2 key, proves the inviter holds it
  sealed @2 :Data;                   # AEAD under the inviter's box key: a PairProof (device, signature)
}

struct PairJoin {                    # joiner -> inviter, in the clear
  confirm @0 :Data;                  # 32: the joiner's key confirmation
  sealed @1 :Data;                   # AEAD under the joiner's box key: a PairProof (device, signature, name)
}

struct PairWelcome {                 # inviter -> joiner, in the clear
  sealed @0 :Data;                   # AEAD under the inviter's box key: a PairProof (token)
}

struct PairProof {                   # the plaintext of a sealed field
  device @0 :Data;                   # Ed25519 public key (32)
  signature @1 :Data;                # over BLAKE2b-256(role label ++ transcript ++ key binding)
  name @2 :Text;                     # the name the joiner asks for (empty: the invite's)
  token @3 :Text;                    # the join token (welcome only)
  serving @4 :Bool;                  # welcome only: a running `serve` answered, so its address is worth keeping
}

# --- protocol -----------------------------------------------------------------

struct Message {
  union {
    hello @0 :Hello;
    want @1 :Want;
    events @2 :Events;
    ack @3 :Ack;
    heartbeat @4 :Heartbeat;
    frontier @5 :Frontier;
    error @6 :Error;
    goodbye @7 :Goodbye;
    snapshotWant @8 :SnapshotWant;
    snapshotOffer @9 :SnapshotOffer;
    snapshotChunk @10 :SnapshotChunk;
    snapshotAck @11 :SnapshotAck;
  }
}

struct Hello {                       # first message each way after the handshake
  version @0 :UInt16;                # 3
  group @1 :Data;                    # group id (32)
  device @2 :Data;                   # sender's device key (32), as authenticated
  frontier @3 :Data;                 # n x (author(32) epoch(u32be) seq(u64be)), sorted by author
  truncated @4 :Data;                # the sender's truncation points, packed as frontier: it holds no event at or below them
}

struct Want {                        # "send me these", answered with Events
  ranges @0 :Data;                   # n x (author(32) epoch(u32be) from(u64be) to(u64be)), inclusive
  payloads @1 :Data;                 # packed as ranges: events I hold without their payload; send them whole
}

struct Events {                      # a batch; the receiver ingests it whole or not at all, then acks
  batch @0 :UInt64;                  # sender's batch number, 1, 2, 3 ... per connection
  events @1 :List(WireEvent);        # in an order ingest accepts (causal)
  answered @2 :UInt32;               # payload wants (Want.payloads) this batch finishes answering (version 3)
}

struct WireEvent {
  record @0 :Data;                   # header bytes ++ signature, exactly as stored
  payload @1 :Data;                  # exactly as hashed; empty when withheld
  flags @2 :UInt8;                   # bit 0: withheld, the payload is not sent (partial replication, erasure)
}

struct Ack {
  batch @0 :UInt64;                  # the batch ingested
  frontier @1 :Data;                 # the receiver's frontier after it (packed as in Hello)
}

struct Heartbeat {
  digest @0 :Data;                   # BLAKE2b-128 of the sender's packed frontier
}

struct Frontier {                    # the full frontier, sent when heartbeat digests differ
  frontier @0 :Data;
  truncated @1 :Data;                # as in Hello
}

struct Error {                       # the sender closes after it
  code @0 :Text;                     # e.g. "signature", "chain", "fork", "decode", "too-large", "not-enrolled"
  message @1 :Text;
}

struct Goodbye {
  reason @0 :Text;
}

# --- bootstrap from a snapshot (docs/protocol.md section 8) ----------------------

struct SnapshotWant {                # "send me your base snapshot": my frontier is below your truncation points
  frontier @0 :Data;                 # the asker's frontier now (packed as in Hello)
}

struct SnapshotOffer {               # answer to SnapshotWant; the views' state follows in SnapshotChunks
  record @0 :Data;                   # the snapshot event's record, exactly as stored
  payload @1 :Data;                  # its payload (a Snapshot)
  views @2 :List(SnapshotView);      # each view's state length, in the order the chunks come
}

struct SnapshotView {
  name @0 :Text;                     # "roster", "pref", "memory"
  size @1 :UInt64;                   # total bytes of that view's state
}

struct SnapshotChunk {               # the next piece of one view's state, in order, at most 1 MiB
  view @0 :Text;
  offset @1 :UInt64;                 # bytes of this view sent before this chunk
  data @2 :Data;
}

struct SnapshotAck {                 # the receiver took chunk n (1, 2, 3 ... per offer); the last one once installed
  chunk @0 :UInt64;
}
