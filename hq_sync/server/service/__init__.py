"""HQ's services: one module per capability, each function one transaction over the `HqDb`.

The API (`hq_sync.server.api`) and the console (`hq_sync.server.console`) only decode, authenticate
and call these.
"""
