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
}
