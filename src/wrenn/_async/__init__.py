"""The client API (clients, capsules and their resources). Only the asyncio/trio package
is written by hand; ``build_sync.py`` generates the blocking one from it."""
