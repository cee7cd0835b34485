"""The hand-written asynchronous API. ``build_sync.py`` generates ``wrenn._sync`` from it."""
