"""The sealed payload envelope: key id, nonce and AEAD ciphertext bound to group, author, scope and kind."""

from __future__ import annotations

from agentlog import crypto
from agentlog.log import sealing

GROUP, AUTHOR = b"g" * 32, b"a" * 32
KID = b"k" * 32


def test_round_trip_and_layout():
    key = crypto.content_key()
    ad = sealing.ad(GROUP, AUTHOR, "health", "memory.put")
    assert ad == b"agentlog sealed 1" + GROUP + AUTHOR + b"health\0memory.put"
    envelope = sealing.seal(key, KID, b"plain bytes", ad)
    assert envelope[:32] == KID
    assert len(envelope) == 32 + 24 + len(b"plain bytes") + 16
    assert b"plain bytes" not in envelope
    assert sealing.key_id(envelope) == KID
    assert sealing.open_envelope({KID: key}, envelope, ad) == b"plain bytes"


def test_nonces_differ():
    key = crypto.content_key()
    ad = sealing.ad(GROUP, AUTHOR, "health", "observation")
    assert sealing.seal(key, KID, b"x", ad) != sealing.seal(key, KID, b"x", ad)


def test_does_not_open_elsewhere():
    key = crypto.content_key()
    ad = sealing.ad(GROUP, AUTHOR, "health", "memory.put")
    envelope = sealing.seal(key, KID, b"secret", ad)
    assert sealing.open_envelope({}, envelope, ad) is None                                  # no key
    assert sealing.open_envelope({KID: crypto.content_key()}, envelope, ad) is None         # another key
    for other in (sealing.ad(b"h" * 32, AUTHOR, "health", "memory.put"),                    # moved to another group,
                  sealing.ad(GROUP, b"b" * 32, "health", "memory.put"),                     # author,
                  sealing.ad(GROUP, AUTHOR, "topic:home", "memory.put"),                    # scope,
                  sealing.ad(GROUP, AUTHOR, "health", "observation")):                      # or kind
        assert sealing.open_envelope({KID: key}, envelope, other) is None
    tampered = bytearray(envelope)
    tampered[-1] ^= 1
    assert sealing.open_envelope({KID: key}, bytes(tampered), ad) is None
    assert sealing.open_envelope({KID: key}, envelope[:40], ad) is None
    assert sealing.key_id(envelope[:40]) is None


def test_content_keys_travel_in_boxes_only_their_device_opens():
    phone, speaker = crypto.DeviceKey.generate(), crypto.DeviceKey.generate()
    key = crypto.content_key()
    box = crypto.seal_box(phone.public, key)
    assert len(box) == crypto.BOX_LEN == 80
    assert phone.open_box(box) == key
    assert speaker.open_box(box) is None
    assert phone.open_box(box[:-1]) is None
