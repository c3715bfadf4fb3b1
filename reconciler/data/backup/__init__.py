"""Backups: the building blocks of an encrypted, streamed, verifiable copy of one environment.

A backup is never held in memory or on the daemon's disk as a whole: ``pg_dump`` and the
filestore are framed into one stream (``framing``), compressed and encrypted with an
authenticated streaming construction (``crypto``), and uploaded part by part (``storage``).
Which backups to delete is a pure decision over their dates (``retention``). Orchestration
(what to dump, where the manifest goes) belongs to the engine, not here.
"""
