"""The one-time pairing code (docs/pairing.md): `NN-word-word-word`, read aloud from one device to another.

`NN` is the invite's public slot: it tells the inviter which pending invite a joiner means and is
sent in the clear. The three words are the secret: 24 bits from a list of 256 words, the SPAKE2
password, never sent or stored anywhere but in the inviter's home while the invite is pending.
Pure: the caller supplies the random bytes.
"""

from __future__ import annotations

from agentlog.errors import UsageError

SLOTS = 99
"""Slots 1..SLOTS: two digits to read."""
WORDS_IN_CODE = 3
WORDS = tuple("""
    acorn adapt alarm album alpha amber angle anvil apple april arena armor arrow atlas attic autumn
    bacon badge bagel baker bamboo banjo barn basil basket beach beacon bean bear beaver bell berry
    bison blade blanket bloom blue board bonus boot bottle bounce bread brick bridge brook brush bucket
    buffalo bugle butter cabin cactus camel candle canoe canyon carbon carpet castle cedar cello chalk cherry
    chess chimney cider circus citrus clay cliff clock cloud clover cobalt cocoa comet copper coral cotton
    cradle crane crayon cricket crystal cupcake curtain daisy dancer delta denim desert diamond dinner dolphin donkey
    dragon drum eagle echo elbow ember emerald engine falcon feather fern fiddle fig finch flame flute
    forest fossil fountain fox frost galaxy garden garlic gecko ginger glacier globe goose granite grape gravel
    guitar hammer harbor harvest hazel helmet heron hickory honey horizon hornet iceberg igloo island ivory jacket
    jaguar jasmine jelly jewel jungle kayak kettle kiwi koala ladder lagoon lantern lemon lily lion lobster
    lotus magnet mango maple marble meadow melon meteor mint mirror mitten monkey moose mosaic muffin museum
    mustard napkin nectar needle nickel noodle nutmeg oasis ocean olive onion orange orbit orchid otter owl
    oyster paddle panda paper parrot peach peanut pebble pepper piano pickle pigeon pillow pilot pine planet
    plum pocket pony popcorn potato prairie pumpkin puzzle quartz quilt rabbit radar radish rainbow raven ribbon
    river robin rocket rose ruby saddle salmon sandal saturn scarf shadow shell silver sketch sled spider
    spoon spring squirrel stable star stone sugar summit sunset swan table tango teapot thunder tiger timber
""".split())
_INDEX = {word: i for i, word in enumerate(WORDS)}


def make(slot: int, entropy: bytes) -> str:
    """The code for `slot` with the secret drawn from `entropy` (WORDS_IN_CODE random bytes)."""
    if not 1 <= slot <= SLOTS or len(entropy) != WORDS_IN_CODE:
        raise ValueError(f"a code takes a slot 1..{SLOTS} and {WORDS_IN_CODE} random bytes")
    return "-".join([str(slot), *(WORDS[b] for b in entropy)])


def parse(text: str) -> tuple[int, bytes]:
    """(slot, secret) from a code as a person typed it: case, spaces and separators are forgiven.

    The secret is the canonical word string, the password both sides feed SPAKE2.

    Raises:
        UsageError: not a slot number and WORDS_IN_CODE words of the list.
    """
    parts = [p for p in text.strip().lower().replace(" ", "-").replace("_", "-").split("-") if p]
    shape = f"a code looks like 7-{'-'.join(WORDS[:WORDS_IN_CODE])}: a number and {WORDS_IN_CODE} words"
    if len(parts) != 1 + WORDS_IN_CODE or not parts[0].isdigit() or not 1 <= int(parts[0]) <= SLOTS:
        raise UsageError(f"code {text[:60]!r} is not a pairing code: {shape}")
    unknown = [p for p in parts[1:] if p not in _INDEX]
    if unknown:
        raise UsageError(f"code {text[:60]!r} is not a pairing code: {unknown[0][:20]!r} is not one of its words")
    return int(parts[0]), "-".join(parts[1:]).encode()
