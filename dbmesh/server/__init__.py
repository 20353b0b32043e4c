"""Listeners, per-connection asyncio glue, TLS and the process lifecycle."""
