"""Payment providers' statements: parsers (statements.py) and the pure matcher (matching.py).

Both are pure: bytes in, msgspec Structs out; rows and the store's tenders in, matches and anomalies
out. The hub's storage and HQ's chain bill are thin shells around them.
"""
