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

MEMORY_KINDS = frozenset({"memory.put", "memory.update", "memory.delete"})
MEMORY_TYPES = ("fact", "preference", "decision", "finding", "context", "conversation")
MAX_CONTENT_BYTES = 16 * 1024
MAX_TAGS = 32
MAX_TAG_LEN = 64
MAX_REASON_LEN = 1024
MAX_EMBEDDING_DIM = 4096
MAX_MODEL_LEN = 128
