@0xe4269a8d554ef09c;
# The join token handed from an enrolled device to a new one (agentlog devices join).

struct JoinToken {
  formatVersion @0 :UInt16;          # 1
  group @1 :Data;                    # 32-byte group id
  founder @2 :Data;                  # key of the device whose seq-1 event created the group
  genesis @3 :Data;                  # id of that event: the root every history must reach
  device @4 :Data;                   # the new device's key, as enrolled
  name @5 :Text;
  enrollHeader @6 :Data;             # the device.enroll event: header bytes ++ signature
  enrollPayload @7 :Data;
  sealedGroupKey @8 :Data;           # group secret, sealed (crypto_box_seal) to the new device
  relay @9 :JoinRelay;               # when the group has a relay: left unset otherwise
}

# What lets a new device use the group's relay before it holds any event (docs/relay.md, "Keys").
struct JoinRelay {
  address @0 :Text;                  # "nats://HOST:PORT" of a relay the enrolling device uses, or empty
  current @1 :Data;                  # id of the relay key to seal with (one of `keys`)
  keys @2 :List(JoinRelayKey);       # every relay key the enrolling device held, in epoch order
}

struct JoinRelayKey {
  id @0 :Data;                       # the key's id: the scope.key event of scope relay that introduced it
  box @1 :Data;                      # the key sealed (crypto_box_seal) to the new device
}
