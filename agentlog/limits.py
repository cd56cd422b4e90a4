"""The ranges of an event header's numbers (docs/format.md section 3.4), in a module light enough for
the quick readers (pref_lookup) to import. Pure."""

MAX_EPOCH = 2**31 - 1                    # an author's epoch + 1 still fits the UInt32
MAX_SEQ = MAX_LAMPORT = 2**53 - 1        # + 1 fits the UInt64, and JSON and float readers stay exact
MIN_TIME_MS, MAX_TIME_MS = 0, 253_402_300_799_999    # 1970-01-01 to 9999-12-31T23:59:59.999Z
