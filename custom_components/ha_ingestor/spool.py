"""The durable spool: batches waiting for InfluxDB, kept on disk across outages and
Home Assistant restarts, plus the dead letters (lines the server refused).

SQLite from the standard library in WAL mode, not a hand-rolled file format: every
append and acknowledgement is one transaction, so a crash between a write to
InfluxDB and its acknowledgement replays that batch — harmless, because a point
with the same series and timestamp overwrites itself in InfluxDB. Batches are
stored zlib-compressed. This class is synchronous; the pipeline calls it in the
executor, never on the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
import sqlite3
import threading
import time
import zlib

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    points INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    line TEXT NOT NULL,
    error TEXT NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class SpooledBatch:
    """One batch read back from the spool: its body is sent as it was stored."""

    id: int
    points: int
    body: bytes

    @property
    def lines(self) -> list[str]:
        """The batch's lines (needed only when the server refuses some)."""
        return self.body.decode("utf-8", "replace").split("\n")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A line the server refused, with its reason."""

    id: int
    created: float
    line: str
    error: str


class Spool:
    """Batches on disk, oldest first, bounded in size."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self.points = 0
        self.batches = 0
        self.bytes = 0
        self.dead_letter_count = 0

    def open(self) -> None:
        """Open (or create) the spool and read its counters."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        row = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(points), 0), COALESCE(SUM(LENGTH(body)), 0) "
            "FROM batches"
        ).fetchone()
        self.batches, self.points, self.bytes = row
        self.dead_letter_count = db.execute(
            "SELECT COUNT(*) FROM dead_letters"
        ).fetchone()[0]
        self._db = db

    def close(self) -> None:
        """Close the database (everything is already committed)."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("spool is closed")
        return self._db

    def append(self, lines: list[str]) -> int:
        """Store a batch; return how many points were dropped to stay in bounds.

        When the spool is over its size, the oldest batches go first.
        """
        body = zlib.compress("\n".join(lines).encode("utf-8", "replace"), 1)
        with self._lock:
            db = self._conn
            db.execute(
                "INSERT INTO batches (created, points, body) VALUES (?, ?, ?)",
                (time.time(), len(lines), body),
            )
            self.batches += 1
            self.points += len(lines)
            self.bytes += len(body)
            dropped = 0
            while self.bytes > self.max_bytes and self.batches > 0:
                row = db.execute(
                    "SELECT id, points, LENGTH(body) FROM batches ORDER BY id LIMIT 1"
                ).fetchone()
                db.execute("DELETE FROM batches WHERE id = ?", (row[0],))
                self.batches -= 1
                self.points -= row[1]
                self.bytes -= row[2]
                dropped += row[1]
            return dropped

    def peek(self, count: int = 1, after: int = 0) -> list[SpooledBatch]:
        """The oldest ``count`` batches with an id above ``after`` (fewer when the
        spool holds fewer)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, points, body FROM batches WHERE id > ? ORDER BY id LIMIT ?",
                (after, count),
            ).fetchall()
        return [SpooledBatch(row[0], row[1], zlib.decompress(row[2])) for row in rows]

    def ack(self, batch_ids: list[int]) -> None:
        """Forget batches the server confirmed."""
        with self._lock:
            for batch_id in batch_ids:
                row = self._conn.execute(
                    "DELETE FROM batches WHERE id = ? RETURNING points, LENGTH(body)",
                    (batch_id,),
                ).fetchone()
                if row is not None:
                    self.batches -= 1
                    self.points -= row[0]
                    self.bytes -= row[1]

    def add_dead_letters(self, lines: list[str], error: str) -> None:
        """Set aside lines the server refused."""
        now = time.time()
        with self._lock:
            self._conn.executemany(
                "INSERT INTO dead_letters (created, line, error) VALUES (?, ?, ?)",
                [(now, line, error) for line in lines],
            )
            self.dead_letter_count += len(lines)

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The oldest dead letters."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, created, line, error FROM dead_letters ORDER BY id LIMIT ?",
                (limit,),
            ).fetchall()
        return [DeadLetter(*row) for row in rows]

    def take_dead_letters(self) -> list[str]:
        """Remove every dead letter and return its line (to be written again)."""
        with self._lock:
            rows = self._conn.execute(
                "DELETE FROM dead_letters RETURNING line"
            ).fetchall()
            self.dead_letter_count = 0
        return [row[0] for row in rows]

    def purge_dead_letters(self) -> int:
        """Delete every dead letter; return how many there were."""
        with self._lock:
            count = self._conn.execute("DELETE FROM dead_letters").rowcount
            self.dead_letter_count = 0
        return count
