"""SQLite persistence (stdlib ``sqlite3``): capsules, templates, processes, events, samples.

One connection, used from the server's event-loop thread and occasionally from
worker threads, so every call takes a lock.  Autocommit + WAL keeps each write
durable without long transactions; ``close()`` checkpoints on shutdown.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS capsules (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    template TEXT NOT NULL,
    vcpus INTEGER NOT NULL,
    memory_mb INTEGER NOT NULL,
    timeout_sec INTEGER NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    last_active_at REAL,
    last_updated REAL NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS templates (
    name TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    vcpus INTEGER NOT NULL DEFAULT 0,
    memory_mb INTEGER NOT NULL DEFAULT 0,
    size_bytes INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    platform INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS processes (
    capsule_id TEXT NOT NULL,
    pid INTEGER NOT NULL,
    tag TEXT,
    cmd TEXT NOT NULL,
    args TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (capsule_id, pid)
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS samples (
    capsule_id TEXT NOT NULL,
    ts REAL NOT NULL,
    cpu_pct REAL NOT NULL,
    mem_bytes INTEGER NOT NULL,
    disk_bytes INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS samples_by_capsule ON samples (capsule_id, ts);
CREATE TABLE IF NOT EXISTS fleet (
    ts REAL NOT NULL,
    running INTEGER NOT NULL,
    vcpus INTEGER NOT NULL,
    memory_mb INTEGER NOT NULL,
    cpu_seconds REAL NOT NULL DEFAULT 0,
    interval REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS fleet_by_ts ON fleet (ts);
"""


@dataclass
class CapsuleRow:
    id: str
    status: str
    template: str
    vcpus: int
    memory_mb: int
    timeout_sec: int
    created_at: float
    started_at: float | None
    last_active_at: float | None
    last_updated: float
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class TemplateRow:
    name: str
    type: str
    vcpus: int
    memory_mb: int
    size_bytes: int
    created_at: float
    platform: bool


@dataclass
class ProcessRow:
    capsule_id: str
    pid: int
    tag: str | None
    cmd: str
    args: list[str]


class Store:
    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        # The server's alone (commands and their arguments are in it); SQLite gives
        # its -wal and -shm files the database file's mode.
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
        for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            with contextlib.suppress(FileNotFoundError):
                os.chmod(name, 0o600)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        with self._lock:
            self._db.executescript(_SCHEMA)
            self._db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )

    def close(self) -> None:
        with self._lock:
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                self._db.close()

    def _exec(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    # capsules -----------------------------------------------------------------
    _CAPSULE_COLS = (
        "id, status, template, vcpus, memory_mb, timeout_sec, created_at, started_at,"
        " last_active_at, last_updated, metadata"
    )

    @staticmethod
    def _capsule(row: tuple[Any, ...]) -> CapsuleRow:
        return CapsuleRow(
            id=row[0],
            status=row[1],
            template=row[2],
            vcpus=row[3],
            memory_mb=row[4],
            timeout_sec=row[5],
            created_at=row[6],
            started_at=row[7],
            last_active_at=row[8],
            last_updated=row[9],
            metadata=_metadata(row[10]),
        )

    def insert_capsule(self, c: CapsuleRow) -> None:
        self._exec(
            f"INSERT INTO capsules ({self._CAPSULE_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                c.id,
                c.status,
                c.template,
                c.vcpus,
                c.memory_mb,
                c.timeout_sec,
                c.created_at,
                c.started_at,
                c.last_active_at,
                c.last_updated,
                json.dumps(c.metadata),
            ),
        )

    def get_capsule(self, capsule_id: str) -> CapsuleRow | None:
        rows = self._exec(f"SELECT {self._CAPSULE_COLS} FROM capsules WHERE id=?", (capsule_id,))
        return self._capsule(rows[0]) if rows else None

    def list_capsules(self, statuses: tuple[str, ...] | None = None) -> list[CapsuleRow]:
        sql = f"SELECT {self._CAPSULE_COLS} FROM capsules"
        params: tuple[Any, ...] = ()
        if statuses:
            sql += f" WHERE status IN ({','.join('?' * len(statuses))})"
            params = statuses
        sql += " ORDER BY created_at DESC, rowid DESC"
        return [self._capsule(r) for r in self._exec(sql, params)]

    def update_capsule(self, capsule_id: str, **fields: Any) -> None:
        fields.setdefault("last_updated", time.time())
        cols = ", ".join(f"{k}=?" for k in fields)
        self._exec(f"UPDATE capsules SET {cols} WHERE id=?", (*fields.values(), capsule_id))

    # templates ----------------------------------------------------------------
    def upsert_template(self, t: TemplateRow) -> None:
        self._exec(
            "INSERT OR REPLACE INTO templates (name, type, vcpus, memory_mb, size_bytes,"
            " created_at, platform) VALUES (?,?,?,?,?,?,?)",
            (t.name, t.type, t.vcpus, t.memory_mb, t.size_bytes, t.created_at, int(t.platform)),
        )

    def get_template(self, name: str) -> TemplateRow | None:
        rows = self._exec(
            "SELECT name, type, vcpus, memory_mb, size_bytes, created_at, platform"
            " FROM templates WHERE name=?",
            (name,),
        )
        return self._template(rows[0]) if rows else None

    def list_templates(self, type_: str | None = None) -> list[TemplateRow]:
        sql = "SELECT name, type, vcpus, memory_mb, size_bytes, created_at, platform FROM templates"
        params: tuple[Any, ...] = ()
        if type_ is not None:
            sql += " WHERE type=?"
            params = (type_,)
        sql += " ORDER BY created_at DESC, rowid DESC"
        return [self._template(r) for r in self._exec(sql, params)]

    @staticmethod
    def _template(r: tuple[Any, ...]) -> TemplateRow:
        return TemplateRow(
            name=r[0],
            type=r[1],
            vcpus=r[2],
            memory_mb=r[3],
            size_bytes=r[4],
            created_at=r[5],
            platform=bool(r[6]),
        )

    def delete_template(self, name: str) -> None:
        self._exec("DELETE FROM templates WHERE name=?", (name,))

    # processes ----------------------------------------------------------------
    def add_process(self, p: ProcessRow) -> None:
        self._exec(
            "INSERT OR REPLACE INTO processes (capsule_id, pid, tag, cmd, args) VALUES (?,?,?,?,?)",
            (p.capsule_id, p.pid, p.tag, p.cmd, json.dumps(p.args)),
        )

    def remove_process(self, capsule_id: str, pid: int) -> None:
        self._exec("DELETE FROM processes WHERE capsule_id=? AND pid=?", (capsule_id, pid))

    def list_processes(self, capsule_id: str) -> list[ProcessRow]:
        rows = self._exec(
            "SELECT capsule_id, pid, tag, cmd, args FROM processes WHERE capsule_id=? ORDER BY pid",
            (capsule_id,),
        )
        return [ProcessRow(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows]

    def clear_processes(self, capsule_id: str | None = None) -> None:
        if capsule_id is None:
            self._exec("DELETE FROM processes")
        else:
            self._exec("DELETE FROM processes WHERE capsule_id=?", (capsule_id,))

    # events -------------------------------------------------------------------
    def add_event(self, ts: float, kind: str, payload: dict[str, Any]) -> int:
        """Store an event and return its ``seq``: AUTOINCREMENT never hands one out twice,
        even after old events were pruned or the server restarted on this state."""
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO events (ts, kind, payload) VALUES (?,?,?)",
                (ts, kind, json.dumps(payload)),
            )
            return int(cursor.lastrowid or 0)

    def last_event_seq(self) -> int:
        """The ``seq`` of the last event ever stored here (0 for none)."""
        rows = self._exec("SELECT seq FROM sqlite_sequence WHERE name='events'")
        return int(rows[0][0]) if rows else 0

    def count_events(self) -> int:
        return int(self._exec("SELECT COUNT(*) FROM events")[0][0])

    # samples ------------------------------------------------------------------
    def add_sample(self, capsule_id: str, ts: float, cpu: float, mem: int, disk: int) -> None:
        self._exec(
            "INSERT INTO samples (capsule_id, ts, cpu_pct, mem_bytes, disk_bytes) VALUES (?,?,?,?,?)",
            (capsule_id, ts, cpu, mem, disk),
        )

    def samples(self, capsule_id: str, since: float) -> list[tuple[float, float, int, int]]:
        return [
            (r[0], r[1], r[2], r[3])
            for r in self._exec(
                "SELECT ts, cpu_pct, mem_bytes, disk_bytes FROM samples"
                " WHERE capsule_id=? AND ts>=? ORDER BY ts",
                (capsule_id, since),
            )
        ]

    def add_fleet(
        self,
        ts: float,
        running: int,
        vcpus: int,
        memory_mb: int,
        cpu_seconds: float,
        interval: float,
    ) -> None:
        self._exec(
            "INSERT INTO fleet (ts, running, vcpus, memory_mb, cpu_seconds, interval)"
            " VALUES (?,?,?,?,?,?)",
            (ts, running, vcpus, memory_mb, cpu_seconds, interval),
        )

    def fleet(
        self, since: float, until: float | None = None
    ) -> list[tuple[float, int, int, int, float, float]]:
        sql = "SELECT ts, running, vcpus, memory_mb, cpu_seconds, interval FROM fleet WHERE ts>=?"
        params: tuple[Any, ...] = (since,)
        if until is not None:
            sql += " AND ts<?"
            params = (since, until)
        return [
            (r[0], r[1], r[2], r[3], r[4], r[5]) for r in self._exec(sql + " ORDER BY ts", params)
        ]

    def prune(self, samples_before: float, fleet_before: float) -> None:
        self._exec("DELETE FROM samples WHERE ts<?", (samples_before,))
        self._exec("DELETE FROM fleet WHERE ts<?", (fleet_before,))
        self._exec("DELETE FROM events WHERE ts<?", (fleet_before,))


def _metadata(raw: Any) -> dict[str, str]:
    # A corrupt metadata column must not make a capsule (or the whole list) unreadable.
    try:
        value = json.loads(raw)
    except (TypeError, ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}
