@0xf39372e2e1f837ef;
# One payload struct per event kind. A payload is a single-segment Cap'n Proto
# message of the struct named for its kind (see agentlog/log/payloads.py: KINDS).
# Fixed-point integers (milli, basis points) keep reducers free of float drift.

struct KeyValue {
  key @0 :Text;
  value @1 :Text;
}

# --- preferences -----------------------------------------------------------

struct Observation {                 # kind "observation": the agent saw the user use a value
  setting @0 :Text;
  value @1 :Text;
  context @2 :List(KeyValue);        # e.g. daypart=night, device_class=phone
  weightMilli @3 :UInt32;            # evidence weight in thousandths (1000 = 1.0)
}

struct Decision {                    # kind "decision": the agent chose a value
  setting @0 :Text;
  value @1 :Text;
  context @2 :List(KeyValue);
  confidenceBp @3 :UInt16;           # 0..10000 basis points
  reason @4 :Text;
}

struct Correction {                  # kind "correction": the user corrected a decision
  decision @0 :Data;                 # event id of the decision
  value @1 :Text;                    # the value the user wanted
  reason @2 :Text;
}

struct PrefSet {                     # kind "pref.set": explicit statement by the user
  setting @0 :Text;
  value @1 :Text;
  context @2 :List(KeyValue);
}

struct PrefForget {                  # kind "pref.forget": drop what was learned about a setting
  setting @0 :Text;
}

enum OverridePolicy {
  unchanged @0;
  sticky @1;
  vote @2;
  reconfirm @3;
}

enum ValueType {
  unchanged @0;
  text @1;
  bool @2;                           # "true" | "false"
  number @3;                         # canonical decimal, e.g. "-1.5", "20"
  choice @4;                         # one of `choices`
}

struct PrefConfig {                  # kind "pref.config": per-setting policy, decay and value type
  setting @0 :Text;
  policy @1 :OverridePolicy;         # unchanged keeps the current policy
  halfLifeMs @2 :UInt64;             # 0 keeps the current half-life
  valueType @3 :ValueType;           # unchanged keeps the current type
  choices @4 :List(Text);            # the allowed values when valueType is choice
}

struct PrefConfirm {                 # kind "pref.confirm": re-confirm a stale override
  setting @0 :Text;
  baseline @1 :Text;                 # the shared belief the device accepts living beside ("" = none)
}

struct OverrideSet {                 # kind "override.set": this device only (scope device:<id>)
  setting @0 :Text;
  value @1 :Text;
  context @2 :List(KeyValue);        # must be empty: an override holds in every context on its device
  baseline @3 :Text;                 # the shared belief when the override was set ("" = none)
}

struct OverrideClear {               # kind "override.clear"
  setting @0 :Text;
}

# --- memory ----------------------------------------------------------------

enum MemoryType {
  fact @0;
  preference @1;
  decision @2;
  finding @3;
  context @4;
  conversation @5;
}

struct Embedding {
  model @0 :Text;                    # name of the model that produced the vector
  vector @1 :List(Float32);
}

struct MemoryPut {                   # kind "memory.put": a new entry, id minted by its origin
  entry @0 :Data;                    # 16-byte entry id
  type @1 :MemoryType;
  content @2 :Text;
  tags @3 :List(Text);
  confidenceBp @4 :UInt16;
  embedding @5 :Embedding;           # null when absent
}

struct MemoryField {
  union {
    type @0 :MemoryType;
    content @1 :Text;
    confidenceBp @2 :UInt16;
    embedding @3 :Embedding;
  }
}

struct MemoryUpdate {                # kind "memory.update": field-level changes
  entry @0 :Data;
  fields @1 :List(MemoryField);
  tagsAdd @2 :List(Text);
  tagsRemove @3 :List(Text);         # removes the adds this event's clock has observed
}

struct MemoryDelete {                # kind "memory.delete": tombstone
  entry @0 :Data;
  reason @1 :Text;
}

struct MemoryMerge {                 # kind "memory.merge": an entry folded into another
  entry @0 :Data;                    # the entry merged away: deleted, pointing at `into`
  into @1 :Data;                     # the entry that stays
  content @2 :Text;                  # the merged entry's content as the merging device saw it
  tags @3 :List(Text);               # the merged entry's tags: they join `into`'s
  rewrite @4 :Text;                  # `into`'s new content, or empty to keep it
}

# --- erasure (docs/erasure.md) ----------------------------------------------

struct Erase {                       # kind "erase": delete the payloads of earlier events on every device
  events @0 :List(Data);             # explicit event ids (32 bytes each)
  entry @1 :Data;                    # empty, or a 16-byte memory entry id: every memory.* event of that entry
  setting @2 :Text;                  # empty, or a setting: its value-bearing evidence below this event's lamport
  reason @3 :Text;
}

# --- devices and the log itself --------------------------------------------

struct DeviceEnroll {                # kind "device.enroll"; the group's first event enrols its founder
  device @0 :Data;                   # 32-byte Ed25519 public key
  name @1 :Text;
}

struct DeviceRevoke {                # kind "device.revoke"
  device @0 :Data;
  untilSeq @1 :UInt64;               # events of the device above this seq are not accepted
  reason @2 :Text;
}

struct HeadRef {
  author @0 :Data;
  epoch @1 :UInt32;
  seq @2 :UInt64;
  id @3 :Data;
}

struct ViewState {
  name @0 :Text;
  version @1 :UInt32;
  digest @2 :Data;                   # BLAKE2b-256 of the view's canonical bytes
  state @3 :Data;                    # those bytes
}

struct Snapshot {                    # kind "snapshot": views' state at a frontier
  frontier @0 :List(LogPoint);       # what the views' state covers: the writer's heads
  views @1 :List(ViewState);         # state may be empty: then it travels beside the event (bootstrap)
  stable @2 :List(LogPoint);       # what every device had seen: evidence at or below it is summarized
  cuts @3 :List(SettingCut);         # ... when its effective time is at or before its setting's cut
  retained @4 :Data;                 # BLAKE2b-256 of the ids of the events it keeps as events (docs/compaction.md,
                                     # "Sealed scopes"), in key order; empty: written before they were kept
}

struct LogPoint {                    # one author's event, named with its lamport
  author @0 :Data;
  epoch @1 :UInt32;
  seq @2 :UInt64;
  id @3 :Data;
  lamport @4 :UInt64;                # an author's lamports grow with its seq: "at or below" by lamport alone
  time @5 :UInt64;                   # the event's time (ms), for a later event's clock that names it
}

struct SettingCut {
  setting @0 :Text;
  before @1 :UInt64;                 # ms: the setting's newest evidence at the snapshot, less a day
}

struct EpochStart {                  # kind "epoch.start": first event after a fork
  branches @0 :List(HeadRef);        # the heads of every known branch, both kept
}

# --- sealed scopes (docs/format.md: scope events) ----------------------------

struct SealedKey {                   # a content key sealed to one device
  device @0 :Data;                   # 32-byte device id (Ed25519 public key)
  box @1 :Data;                      # crypto_box_seal(key, X25519(device)): 80 bytes
}

struct ScopeKey {                    # kind "scope.key": a new content key for a scope, and its readers
  scope @0 :Text;
  readers @1 :List(SealedKey);       # exactly the readers from this key on, each with the new key
}

struct GrantedKey {
  key @0 :Data;                      # 32-byte id of the scope.key event that introduced the key
  box @1 :Data;                      # crypto_box_seal(that key, X25519(device))
}

struct ScopeGrant {                  # kind "scope.grant": a reader adds a device and hands it the keys so far
  scope @0 :Text;
  device @1 :Data;
  keys @2 :List(GrantedKey);
}
