"""The preference and memory event kinds, their fields' enumerations and their limits. Pure.

The log checks every payload against these (payloads.py); the reducers and APIs above it
build on the same names, so a rule is written once, in the lowest part that needs it.
"""

EVIDENCE_KINDS = frozenset({"observation", "decision", "correction"})
PREF_KINDS = EVIDENCE_KINDS | {"pref.set", "pref.forget", "pref.config", "pref.confirm", "override.set",
                               "override.clear"}
POLICIES = ("sticky", "vote", "reconfirm")
VALUE_TYPES = ("text", "bool", "number", "choice")
MAX_HALF_LIFE_MS = 3650 * 86_400_000           # ten years
MAX_SETTING_LEN = 128
MAX_VALUE_LEN = 1024
MAX_CONTEXT_KEYS = 4
MAX_CONTEXT_LEN = 64
MAX_CHOICES = 64

MEMORY_KINDS = frozenset({"memory.put", "memory.update", "memory.delete", "memory.merge"})
MEMORY_TYPES = ("fact", "preference", "decision", "finding", "context", "conversation")
MAX_CONTENT_BYTES = 16 * 1024
MAX_TAGS = 32
MAX_TAG_LEN = 64
MAX_REASON_LEN = 1024
MAX_EMBEDDING_DIM = 4096
MAX_MODEL_LEN = 128

ERASE_KIND = "erase"
ERASABLE_KINDS = PREF_KINDS | MEMORY_KINDS     # never device.*, scope.*, snapshot, epoch.start or erase itself
VALUE_KINDS = EVIDENCE_KINDS | {"pref.set", "override.set", "pref.confirm"}   # what a setting rule erases
MAX_ERASE_IDS = 16384          # explicit event ids in one erase request
ERASE_ID_LEN = 32

SCOPE_KINDS = frozenset({"scope.key", "scope.grant"})
USER_SCOPE = "user"
RELAY_SCOPE = "relay"          # reserved: its key is the group's relay key (docs/relay.md); no event is written in it
DEVICE_SCOPE_PREFIX = "device:"
MAX_SCOPE_LEN = 256
MAX_READERS = 256              # a scope's readers: at most the devices a group can name in a clock
MAX_GRANTED_KEYS = 4096        # keys handed over in one scope.grant: a scope's key epochs
BOX_LEN = 80                   # a 32-byte content key in a crypto_box_seal


def is_sealed_scope(scope: str) -> bool:
    """Whether events of `scope` have sealed payloads: every scope but `user` and the `device:` overrides."""
    return scope != USER_SCOPE and not scope.startswith(DEVICE_SCOPE_PREFIX)


def scope_name_problem(scope: str) -> str | None:
    """Why `scope` cannot name a sealed scope, or None."""
    if not isinstance(scope, str) or not scope or len(scope) > MAX_SCOPE_LEN or not scope.isprintable():
        return f"scope name must be 1 to {MAX_SCOPE_LEN} printable characters"
    if not is_sealed_scope(scope):
        return f"scope {scope[:40]!r} is not a sealed scope (not user, not device:...)"
    return None
