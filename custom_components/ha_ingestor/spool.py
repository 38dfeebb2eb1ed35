"""The durable spool: batches waiting for InfluxDB, kept on disk across outages and
Home Assistant restarts, plus the dead letters (lines the server refused).

SQLite from the standard library in WAL mode, not a hand-rolled file format: every
change is one transaction and the counters move only after its commit, so a crash
between a write to InfluxDB and its acknowledgement replays that batch (harmless: a
point with the same series and timestamp overwrites itself). Batches are stored
zlib-compressed, with their lines' byte lengths when a line holds a raw newline.

The spool heals instead of failing: a damaged file is moved aside for a fresh one,
a damaged batch is dropped (or its lines dead-lettered), and every failure is a
``SpoolError``; while the database is unusable each call tries to open it again.
This class is synchronous; the pipeline calls it in the executor.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
import sqlite3
import sys
import threading
import time
import zlib

from .const import LOGGER

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    points INTEGER NOT NULL,
    body BLOB NOT NULL,
    lengths BLOB
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    line TEXT NOT NULL,
    error TEXT NOT NULL
);
"""
_AUTOCHECKPOINT = 1000  # SQLite's default, in pages
_CACHE_KIB = 512
# Errors after which the connection is dropped, so the next call opens the file
# again (and heals it if it is damaged). A full disk keeps its connection.
_LOST = frozenset(
    {
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_CORRUPT,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_NOTADB,
        sqlite3.SQLITE_READONLY,
    }
)
_DAMAGED = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
DAMAGED_BATCH_ERROR = "damaged in the spool: its lines do not match its point count"


class SpoolError(Exception):
    """The spool cannot be read or written (disk full, read-only, damaged, closed)."""


class _DamagedFile(Exception):
    """The database file is not a sound SQLite database."""


class _DamagedBatch(Exception):
    """A stored batch cannot be read back as it was stored."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__()
        self.lines = lines  # what could still be decoded (dead-lettered)


@dataclass(frozen=True, slots=True)
class SpooledBatch:
    """One batch read back from the spool: its body is sent as it was stored."""

    id: int
    points: int
    body: bytes
    # Each line's length in bytes, stored only when a line holds a raw newline.
    line_lengths: tuple[int, ...] | None = None

    @property
    def lines(self) -> list[str]:
        """The batch's lines as they were stored (needed when the server refuses
        some)."""
        if self.line_lengths is None:
            return self.body.decode("utf-8", "replace").split("\n")
        lines: list[str] = []
        start = 0
        for length in self.line_lengths:
            lines.append(self.body[start : start + length].decode("utf-8", "replace"))
            start += length + 1
        return lines


@dataclass(frozen=True, slots=True)
class SpoolRead:
    """What ``Spool.peek`` read, and what it had to set aside on the way."""

    batches: list[SpooledBatch]
    # Points of batches that could not be read back; they are deleted.
    damaged_points: int = 0
    # Lines of batches whose body is intact but disagrees with its point count or
    # line lengths: they moved to the dead letters, to be seen and requeued.
    dead_lettered: int = 0


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
        self._closed = False
        self._backup = False
        self.points = 0
        self.batches = 0
        self.bytes = 0
        self.dead_letter_count = 0
        self.moved_aside: Path | None = None

    @property
    def available(self) -> bool:
        """The database is open and usable."""
        return self._db is not None

    def open(self) -> None:
        """Open (or create) the spool; a damaged file is moved aside for a new one.

        Raises SpoolError when not even a new spool can be created.
        """
        with self._lock:
            self._closed = False
            self._connection()

    def close(self) -> None:
        """Close the database (everything is already committed); idempotent."""
        with self._lock:
            self._closed = True
            db, self._db = self._db, None
            if db is not None:
                with self._failure("close the spool"):
                    db.close()

    def append(self, lines: list[str]) -> int:
        """Store a batch; return how many points were dropped to stay in bounds.

        When the spool is over its size, the oldest batches go first.
        """
        if not lines:
            return 0
        with self._lock:
            with self._writing("store a batch") as db:
                batches = self.batches + 1
                points = self.points + len(lines)
                size = self.bytes + _insert(db, lines)
                dropped = 0
                while size > self.max_bytes and (
                    oldest := db.execute(
                        "SELECT id, points, "
                        "LENGTH(body) + COALESCE(LENGTH(lengths), 0) "
                        "FROM batches ORDER BY id LIMIT 1"
                    ).fetchone()
                ):
                    batch_id, batch_points, batch_size = oldest
                    db.execute("DELETE FROM batches WHERE id = ?", (batch_id,))
                    batches -= 1
                    points -= batch_points
                    size -= batch_size
                    dropped += batch_points
            self.batches, self.points, self.bytes = batches, points, size
            return dropped

    def peek(self, count: int = 1, after: int = 0) -> SpoolRead:
        """The oldest ``count`` readable batches with an id above ``after``.

        A batch that cannot be read back is deleted (its lines go to the dead
        letters when they can still be decoded) and the next one takes its place.
        """
        with self._lock:
            batches: list[SpooledBatch] = []
            damaged: dict[int, tuple[int, list[str]]] = {}
            with self._failure("read the spool"):
                db = self._connection()
                while len(batches) < count:
                    rows = db.execute(
                        "SELECT id, points, body, lengths FROM batches "
                        "WHERE id > ? ORDER BY id LIMIT ?",
                        (after, count - len(batches)),
                    ).fetchall()
                    if not rows:
                        break
                    for batch_id, points, body, lengths in rows:
                        try:
                            batches.append(_read(batch_id, points, body, lengths))
                        except _DamagedBatch as err:
                            damaged[batch_id] = (points, err.lines)
                    after = rows[-1][0]
            if not damaged:
                return SpoolRead(batches)
            now = time.time()
            with self._writing("set aside damaged batches") as db:
                for batch_id, (_, lines) in damaged.items():
                    db.execute("DELETE FROM batches WHERE id = ?", (batch_id,))
                    db.executemany(
                        "INSERT INTO dead_letters (created, line, error) "
                        "VALUES (?, ?, ?)",
                        [(now, line, DAMAGED_BATCH_ERROR) for line in lines],
                    )
            with self._failure("count the spool"):
                # A damaged row's point count may be wrong too: count anew.
                self._count(db)
            return SpoolRead(
                batches,
                sum(points for points, lines in damaged.values() if not lines),
                sum(len(lines) for _, lines in damaged.values()),
            )

    def ack(self, batch_ids: list[int]) -> None:
        """Forget batches the server confirmed."""
        with self._lock:
            batches = points = size = 0
            with self._writing("acknowledge batches") as db:
                for batch_id in batch_ids:
                    row = db.execute(
                        "DELETE FROM batches WHERE id = ? RETURNING points, "
                        "LENGTH(body) + COALESCE(LENGTH(lengths), 0)",
                        (batch_id,),
                    ).fetchone()
                    if row is not None:
                        batches += 1
                        points += row[0]
                        size += row[1]
            self.batches -= batches
            self.points -= points
            self.bytes -= size
            if not self.batches and batches:
                # An outage is over: hand the page cache back (it refills to
                # its bound only while batches come and go).
                with suppress(sqlite3.Error, SpoolError):
                    self._connection().execute("PRAGMA shrink_memory")

    def add_dead_letters(self, lines: list[str], error: str) -> None:
        """Set aside lines the server refused."""
        now = time.time()
        with self._lock:
            with self._writing("store dead letters") as db:
                db.executemany(
                    "INSERT INTO dead_letters (created, line, error) VALUES (?, ?, ?)",
                    [(now, line, error) for line in lines],
                )
            self.dead_letter_count += len(lines)

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The oldest dead letters."""
        with self._lock, self._failure("read the dead letters"):
            rows = (
                self._connection()
                .execute(
                    "SELECT id, created, line, error FROM dead_letters "
                    "ORDER BY id LIMIT ?",
                    (limit,),
                )
                .fetchall()
            )
        return [DeadLetter(*row) for row in rows]

    def requeue_dead_letters(self, batch_size: int = 1000) -> int:
        """Move every dead letter back into spooled batches, to be written again;
        return how many lines moved.

        The spool may exceed its size until the next append trims it: the lines
        were on disk already.
        """
        with self._lock:
            batches = points = size = 0
            with self._writing("requeue the dead letters") as db:
                cursor = db.execute("SELECT line FROM dead_letters ORDER BY id")
                while chunk := [row[0] for row in cursor.fetchmany(batch_size)]:
                    size += _insert(db, chunk)
                    batches += 1
                    points += len(chunk)
                db.execute("DELETE FROM dead_letters")
            self.batches += batches
            self.points += points
            self.bytes += size
            self.dead_letter_count = 0
            return points

    def purge_dead_letters(self) -> int:
        """Delete every dead letter; return how many there were."""
        with self._lock:
            with self._writing("purge the dead letters") as db:
                count = db.execute("DELETE FROM dead_letters").rowcount
            self.dead_letter_count = 0
            return count

    def begin_backup(self) -> None:
        """Move everything into the main file and keep it still until
        ``end_backup``: writes meanwhile stay in the write-ahead log."""
        with self._lock, self._failure("prepare the spool for a backup"):
            self._backup = True
            db = self._connection()
            db.execute("PRAGMA wal_autocheckpoint=0")
            if db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]:
                raise SpoolError(f"The spool {self.path} is busy; cannot checkpoint")

    def end_backup(self) -> None:
        """Let the main file take in the write-ahead log again."""
        with self._lock, self._failure("resume the spool after a backup"):
            self._backup = False
            db = self._connection()
            db.execute(f"PRAGMA wal_autocheckpoint={_AUTOCHECKPOINT}")
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _connection(self) -> sqlite3.Connection:
        """The open database, opened again if an earlier failure dropped it."""
        if self._closed:
            raise SpoolError("the spool is closed")
        if self._db is None:
            self._db = self._connect()
        return self._db

    @contextmanager
    def _failure(self, action: str) -> Iterator[None]:
        """Turn what SQLite or the OS raise into SpoolError."""
        try:
            yield
        except (sqlite3.Error, OSError, zlib.error) as err:
            if getattr(err, "sqlite_errorcode", 0) & 0xFF in _LOST:
                db, self._db = self._db, None
                if db is not None:
                    with suppress(sqlite3.Error, SpoolError):
                        db.close()
            raise SpoolError(f"Cannot {action} ({self.path}): {err}") from err

    @contextmanager
    def _writing(self, action: str) -> Iterator[sqlite3.Connection]:
        """One transaction: committed when the block ends, else rolled back."""
        with self._failure(action):
            db = self._connection()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    with suppress(sqlite3.Error, SpoolError):
                        db.execute("ROLLBACK")
                raise

    def _connect(self) -> sqlite3.Connection:
        """Open the file, moving it aside for a new one when it is damaged."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                return self._connect_checked()
            except _DamagedFile as err:
                reason = str(err)
            self.moved_aside = self._move_aside()
            LOGGER.warning(
                "The spool %s was damaged (%s); moved it to %s and started an "
                "empty one",
                self.path,
                reason,
                self.moved_aside.name,
            )
            return self._connect_checked()
        except _DamagedFile as err:
            raise SpoolError(f"A new spool in {self.path} is damaged: {err}") from err
        except (sqlite3.Error, OSError) as err:
            raise SpoolError(f"Cannot open the spool {self.path}: {err}") from err

    def _connect_checked(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            problems = [row[0] for row in db.execute("PRAGMA quick_check")]
            if problems != ["ok"]:
                raise _DamagedFile(problems[0])
            if mode != "wal":
                raise SpoolError(f"The spool {self.path} cannot use a write-ahead log")
            db.execute("PRAGMA synchronous=NORMAL")
            # Batches are appended and read back in order, each once: a small
            # page cache does (SQLite's default is 2 MB per connection).
            db.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
            db.executescript(_SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(batches)")}
            if "lengths" not in columns:
                db.execute("ALTER TABLE batches ADD COLUMN lengths BLOB")
            if self._backup:
                db.execute("PRAGMA wal_autocheckpoint=0")
            self._count(db)
        except BaseException as err:
            db.close()
            if isinstance(err, sqlite3.DatabaseError) and (
                getattr(err, "sqlite_errorcode", 0) & 0xFF in _DAMAGED
            ):
                raise _DamagedFile(str(err)) from err
            raise
        return db

    def _count(self, db: sqlite3.Connection) -> None:
        """Read the counters from the database."""
        self.batches, self.points, self.bytes = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(points), 0), "
            "COALESCE(SUM(LENGTH(body) + COALESCE(LENGTH(lengths), 0)), 0) "
            "FROM batches"
        ).fetchone()
        self.dead_letter_count = db.execute(
            "SELECT COUNT(*) FROM dead_letters"
        ).fetchone()[0]

    def _move_aside(self) -> Path:
        """Rename the file (and its -wal and -shm files) to ``*.corrupt-<time>``.

        The side files go first: a new database must never meet an old log.
        """
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        number = 1
        while target.exists():
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{number}")
            number += 1
        for suffix in ("-wal", "-shm", ""):
            source = Path(f"{self.path}{suffix}")
            if source.exists():
                source.rename(f"{target}{suffix}")
        return target


def _insert(db: sqlite3.Connection, lines: list[str]) -> int:
    """Store one batch; return its stored size."""
    # A lone surrogate (HA keeps undecodable bytes that way) becomes "?".
    body = "\n".join(lines).encode("utf-8", "replace")
    lengths = None
    if body.count(b"\n") != len(lines) - 1:
        sizes = array("I", (len(line.encode("utf-8", "replace")) for line in lines))
        if sys.byteorder == "big":
            sizes.byteswap()
        lengths = sizes.tobytes()
    stored = zlib.compress(body, 1)
    db.execute(
        "INSERT INTO batches (created, points, body, lengths) VALUES (?, ?, ?, ?)",
        (time.time(), len(lines), stored, lengths),
    )
    return len(stored) + len(lengths or b"")


def _read(
    batch_id: int, points: int, stored: bytes, lengths: bytes | None
) -> SpooledBatch:
    """Decode a stored batch, or raise _DamagedBatch with what can be salvaged."""
    try:
        body = zlib.decompress(stored)
    except (zlib.error, TypeError) as err:
        raise _DamagedBatch([]) from err
    batch = SpooledBatch(batch_id, points, body)
    if lengths is None:
        if body.count(b"\n") + 1 != points:
            raise _DamagedBatch([line for line in batch.lines if line])
        return batch
    sizes = array("I")
    if isinstance(lengths, bytes) and len(lengths) % sizes.itemsize == 0:
        sizes.frombytes(lengths)
        if sys.byteorder == "big":
            sizes.byteswap()
    if len(sizes) != points or sum(sizes) + points - 1 != len(body):
        raise _DamagedBatch([line for line in batch.lines if line])
    return SpooledBatch(batch_id, points, body, tuple(sizes))
