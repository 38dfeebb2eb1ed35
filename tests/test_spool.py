"""The spool heals instead of failing: damaged files and batches, a full disk, a
read-only directory, multi-line points, dead letters and backups, on real files."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing, contextmanager
import logging
import os
from pathlib import Path
import shutil
import sqlite3
import subprocess
import zlib

from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.ha_ingestor import backup, spool_path
from custom_components.ha_ingestor.const import DOMAIN
from custom_components.ha_ingestor.spool import (
    DAMAGED_BATCH_ERROR,
    Spool,
    SpoolError,
)

from .servers import InfluxDB1Server

MAX_BYTES = 10_000_000
OLD_SCHEMA = """
CREATE TABLE batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    points INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    line TEXT NOT NULL,
    error TEXT NOT NULL
);
"""
# InfluxDB 1.x keeps a raw LF inside a string field value.
MULTI_LINE = 'sensor,entity_id=sensor.note message="first line\nsecond line" 1'


def _lines(start: int, count: int) -> list[str]:
    return [
        f"sensor,entity_id=sensor.spool_{n % 5} value={n} {1_700_000_000 + n}"
        for n in range(start, start + count)
    ]


def _random_lines(count: int) -> list[str]:
    """Lines zlib cannot shrink much, to fill a disk quickly."""
    return [
        f'sensor,entity_id=sensor.full blob="{os.urandom(1500).hex()}" 1'
        for _ in range(count)
    ]


def _open(path: Path, max_bytes: int = MAX_BYTES) -> Spool:
    spool = Spool(path, max_bytes)
    spool.open()
    return spool


def _sql(path: Path, statement: str) -> None:
    """Change the database behind the spool's back, as damage or an old version
    would."""
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.executescript(statement)


@contextmanager
def _tmpfs(where: Path, options: str) -> Iterator[Path]:
    """A real tmpfs mounted at ``where``, unmounted afterwards."""
    where.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command: cannot make a small or read-only filesystem")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode:
        pytest.skip(f"mounting a tmpfs needs root: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "--lazy", str(where)], check=False)


def _fill(spool: Spool) -> tuple[int, SpoolError]:
    """Append until the disk is full; return how many batches fit, and the error."""
    for stored in range(100):
        try:
            spool.append(_random_lines(4))
        except SpoolError as err:
            return stored, err
    pytest.fail("the disk never filled up")


def _remount(where: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(where)], check=True)


def test_garbage_spool_file_is_moved_aside_and_a_fresh_spool_works(
    tmp_path: Path,
) -> None:
    """A file SQLite cannot read no longer stops setup: it is kept aside, as it
    was, and a new spool captures."""
    path = tmp_path / "spool.db"
    garbage = os.urandom(8192)
    path.write_bytes(garbage)

    spool = _open(path)

    assert spool.moved_aside is not None
    assert spool.moved_aside.parent == tmp_path
    assert spool.moved_aside.name.startswith("spool.db.corrupt-")
    assert spool.moved_aside.read_bytes() == garbage
    assert spool.available
    assert spool.append(_lines(0, 3)) == 0
    assert [batch.lines for batch in spool.peek().batches] == [_lines(0, 3)]
    spool.close()


def test_truncated_spool_file_is_moved_aside_and_a_fresh_spool_works(
    tmp_path: Path,
) -> None:
    """A spool cut in half (a full disk during a copy, a crash of the storage)
    fails SQLite's check: it is set aside whole and capture goes on."""
    path = tmp_path / "spool.db"
    spool = _open(path)
    for number in range(40):
        spool.append(_random_lines(2) + _lines(number, 1))
    spool.close()
    truncated = path.read_bytes()[: path.stat().st_size // 2]
    path.write_bytes(truncated)

    spool = _open(path)

    assert spool.moved_aside is not None
    assert spool.moved_aside.read_bytes() == truncated
    assert (spool.batches, spool.points) == (0, 0)
    spool.append(_lines(0, 2))
    assert [batch.lines for batch in spool.peek().batches] == [_lines(0, 2)]
    spool.close()


def test_damaged_batch_is_dropped_and_replay_goes_on(tmp_path: Path) -> None:
    """One batch whose stored bytes are damaged is counted and removed; the others
    replay in order, and peek still fills its count."""
    path = tmp_path / "spool.db"
    spool = _open(path)
    for number in range(5):
        spool.append(_lines(number * 10, number + 1))
    _sql(path, "UPDATE batches SET body = x'deadbeef' WHERE id = 3")

    read = spool.peek(4)

    assert [batch.id for batch in read.batches] == [1, 2, 4, 5]
    assert [batch.lines for batch in read.batches] == [
        _lines(number * 10, number + 1) for number in (0, 1, 3, 4)
    ]
    assert (read.damaged_points, read.dead_lettered) == (3, 0)
    assert (spool.batches, spool.points) == (4, 1 + 2 + 4 + 5)
    spool.close()
    spool = _open(path)
    assert (spool.batches, spool.points, spool.dead_letter_count) == (4, 12, 0)
    spool.close()


def test_batch_disagreeing_with_its_point_count_goes_to_the_dead_letters(
    tmp_path: Path,
) -> None:
    """A batch whose body is intact but whose bookkeeping is not is not sent
    blind: its lines wait in the dead letters, where they can be seen and
    requeued."""
    path = tmp_path / "spool.db"
    spool = _open(path)
    spool.append(_lines(0, 3))
    spool.append(_lines(3, 2))
    _sql(path, "UPDATE batches SET points = 7 WHERE id = 1")

    read = spool.peek(2)

    assert [batch.id for batch in read.batches] == [2]
    assert (read.damaged_points, read.dead_lettered) == (0, 3)
    assert [(d.line, d.error) for d in spool.dead_letters()] == [
        (line, DAMAGED_BATCH_ERROR) for line in _lines(0, 3)
    ]
    assert (spool.batches, spool.points, spool.dead_letter_count) == (1, 2, 3)
    spool.close()


def test_line_with_a_raw_newline_comes_back_whole(tmp_path: Path) -> None:
    """A refused batch is split into its points as they were stored: a string
    field holding a newline stays one point."""
    spool = _open(tmp_path / "spool.db")
    lines = [*_lines(0, 2), MULTI_LINE, *_lines(2, 2)]
    spool.append(lines)

    [batch] = spool.peek().batches

    assert batch.points == 5
    assert batch.lines == lines
    assert batch.body == "\n".join(lines).encode()
    spool.close()


def test_old_spool_migrates_and_replays_its_batches(tmp_path: Path) -> None:
    """A spool written by the previous version (no line lengths) opens, gains the
    column and replays what it held; new multi-line points are kept whole."""
    path = tmp_path / "spool.db"
    _sql(path, OLD_SCHEMA)
    with closing(sqlite3.connect(path)) as db, db:
        db.executemany(
            "INSERT INTO batches (created, points, body) VALUES (0, ?, ?)",
            [
                (3, zlib.compress("\n".join(_lines(0, 3)).encode(), 1)),
                (2, zlib.compress("\n".join(_lines(3, 2)).encode(), 1)),
            ],
        )

    spool = _open(path)

    assert spool.moved_aside is None
    assert (spool.batches, spool.points) == (2, 5)
    spool.append([MULTI_LINE])
    read = spool.peek(3)
    assert [batch.lines for batch in read.batches] == [
        _lines(0, 3),
        _lines(3, 2),
        [MULTI_LINE],
    ]
    spool.close()
    with closing(sqlite3.connect(path)) as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(batches)")]
    assert columns == ["id", "created", "points", "body", "lengths"]


def test_full_spool_drops_the_oldest_batches_first(tmp_path: Path) -> None:
    """Over its size, the spool forgets its oldest points and says how many."""
    spool = _open(tmp_path / "spool.db", max_bytes=6000)
    dropped = [spool.append(_random_lines(1)) for _ in range(6)]

    assert sum(dropped) == 6 - spool.points
    assert spool.bytes <= 6000
    assert [batch.id for batch in spool.peek(6).batches] == list(
        range(7 - spool.batches, 7)
    )
    spool.close()


def test_failed_append_stores_nothing_and_keeps_its_counters(tmp_path: Path) -> None:
    """An append is one transaction with its trims: when a step fails, neither the
    new batch nor a trim lands, and the counters still match the file."""
    path = tmp_path / "spool.db"
    spool = _open(path, max_bytes=6000)
    for _ in range(3):
        spool.append(_random_lines(1))
    before = (spool.batches, spool.points, spool.bytes)
    _sql(
        path,
        "CREATE TRIGGER refuse BEFORE DELETE ON batches "
        "BEGIN SELECT RAISE(ABORT, 'trim refused'); END",
    )

    with pytest.raises(SpoolError, match="trim refused"):
        spool.append(_random_lines(1))

    assert (spool.batches, spool.points, spool.bytes) == before
    _sql(path, "DROP TRIGGER refuse")
    assert spool.append(_random_lines(1)) >= 1
    spool.close()
    reopened = _open(path, max_bytes=6000)
    assert (reopened.batches, reopened.points) == (spool.batches, spool.points)
    reopened.close()


def test_full_disk_raises_spool_error_and_recovers_when_space_returns(
    tmp_path: Path,
) -> None:
    """On a full disk appends fail with SpoolError (the delivery task survives),
    the counters tell the truth, and the same spool works once space is freed."""
    with _tmpfs(tmp_path / "small", "size=256k") as where:
        filler = where / "filler"
        filler.write_bytes(os.urandom(64 * 1024))
        spool = _open(where / "spool.db")
        try:
            stored, error = _fill(spool)
            assert "disk is full" in str(error)
            assert isinstance(error.__cause__, sqlite3.OperationalError)
            assert "sensor.full" not in str(error)
            assert stored > 0
            assert (spool.batches, spool.points) == (stored, stored * 4)
            reopened = _open(where / "spool.db")
            assert (reopened.batches, reopened.points, reopened.bytes) == (
                spool.batches,
                spool.points,
                spool.bytes,
            )
            reopened.close()

            filler.unlink()
            assert spool.append(_lines(0, 2)) == 0
            assert spool.batches == stored + 1
            assert len(spool.peek(stored + 1).batches) == stored + 1
        finally:
            spool.close()


def test_read_only_directory_fails_open_then_recovers_when_writable(
    tmp_path: Path,
) -> None:
    """A spool that cannot be created raises SpoolError; once the directory is
    writable the next append opens it by itself."""
    with _tmpfs(tmp_path / "readonly", "ro,size=1m") as where:
        spool = Spool(where / "spool.db", MAX_BYTES)
        try:
            with pytest.raises(SpoolError, match="Cannot open the spool"):
                spool.open()
            assert not spool.available
            with pytest.raises(SpoolError):
                spool.append(_lines(0, 1))

            _remount(where, "rw")

            assert spool.append(_lines(0, 1)) == 0
            assert spool.available
            assert [batch.lines for batch in spool.peek().batches] == [_lines(0, 1)]
        finally:
            spool.close()


def test_requeue_moves_every_dead_letter_back_into_the_spool(tmp_path: Path) -> None:
    """Requeued dead letters come back as batches, multi-line points whole, and
    leave the dead letters."""
    spool = _open(tmp_path / "spool.db")
    lines = [*_lines(0, 1200), MULTI_LINE, *_lines(1200, 800)]
    spool.add_dead_letters(lines, "field type conflict")
    assert spool.dead_letter_count == 2001

    assert spool.requeue_dead_letters(batch_size=1000) == 2001

    assert (spool.dead_letter_count, spool.dead_letters()) == (0, [])
    assert (spool.batches, spool.points) == (3, 2001)
    read = spool.peek(3)
    assert [batch.points for batch in read.batches] == [1000, 1000, 1]
    assert [line for batch in read.batches for line in batch.lines] == lines
    spool.close()


def test_failed_requeue_keeps_every_dead_letter(tmp_path: Path) -> None:
    """Requeueing is one transaction: when storing a batch fails midway, every
    dead letter is still there and no batch was added."""
    path = tmp_path / "spool.db"
    spool = _open(path)
    spool.add_dead_letters(_lines(0, 25), "field type conflict")
    _sql(
        path,
        "CREATE TRIGGER refuse BEFORE INSERT ON batches "
        "WHEN (SELECT COUNT(*) FROM batches) >= 2 "
        "BEGIN SELECT RAISE(ABORT, 'no room'); END",
    )

    with pytest.raises(SpoolError, match="no room"):
        spool.requeue_dead_letters(batch_size=10)

    assert [d.line for d in spool.dead_letters()] == _lines(0, 25)
    assert (spool.dead_letter_count, spool.batches) == (25, 0)
    assert spool.peek(5).batches == []
    spool.close()


def test_closed_spool_refuses_everything(tmp_path: Path) -> None:
    """After close (unload) every call raises SpoolError; closing twice is fine."""
    spool = _open(tmp_path / "spool.db")
    spool.close()
    spool.close()

    assert not spool.available
    with pytest.raises(SpoolError, match="the spool is closed"):
        spool.append(_lines(0, 1))
    with pytest.raises(SpoolError, match="the spool is closed"):
        spool.peek()
    with pytest.raises(SpoolError, match="the spool is closed"):
        spool.begin_backup()


def test_backup_copies_a_complete_spool_from_its_main_file(tmp_path: Path) -> None:
    """During a backup the main file alone holds every batch and does not change,
    even when more than a checkpoint's worth is appended; afterwards it takes in
    what was appended."""
    path = tmp_path / "spool.db"
    spool = _open(path, max_bytes=100_000_000)
    for number in range(3):
        spool.append(_lines(number * 10, 10))

    spool.begin_backup()

    wal = Path(f"{path}-wal")
    assert wal.stat().st_size == 0
    snapshot = path.read_bytes()
    for _ in range(6):  # 5 MB stored: past SQLite's automatic checkpoint (4 MB)
        spool.append([os.urandom(750_000).hex()])
    assert wal.stat().st_size > 1000 * 4096  # more pages than one checkpoint
    assert path.read_bytes() == snapshot
    copy = tmp_path / "backup" / "spool.db"
    copy.parent.mkdir()
    copy.write_bytes(snapshot)
    restored = _open(copy)
    assert restored.moved_aside is None
    assert [batch.lines for batch in restored.peek(5).batches] == [
        _lines(number * 10, 10) for number in range(3)
    ]
    restored.close()

    spool.end_backup()

    assert wal.stat().st_size == 0
    assert path.read_bytes() != snapshot
    spool.close()


def _copy_main_file(path: Path, folder: Path) -> tuple[int, int]:
    """What a backup sees: the size of the spool's log, and the points its main
    file holds when copied alone."""
    wal_size = Path(f"{path}-wal").stat().st_size
    folder.mkdir()
    shutil.copyfile(path, folder / path.name)
    restored = _open(folder / path.name)
    restored.close()
    return wal_size, restored.points


def _v1_entry(server: InfluxDB1Server) -> MockConfigEntry:
    return MockConfigEntry(
        domain=DOMAIN,
        title="home",
        unique_id=f"{server.url}|home",
        data=server.entry_data(),
    )


async def test_backup_platform_holds_each_spool_still(
    hass: HomeAssistant, private_influxdb_v1: InfluxDB1Server, tmp_path: Path
) -> None:
    """What Home Assistant's backup copies of a spool, its main file alone, holds
    every point spooled during an outage."""
    entry = _v1_entry(private_influxdb_v1)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    private_influxdb_v1.stop()
    for number in range(30):
        hass.states.async_set(f"sensor.backup_{number % 3}", str(number))
    await hass.async_block_till_done()
    assert not await entry.runtime_data.pipeline.async_flush()
    spool = entry.runtime_data.pipeline.spool
    assert spool.points >= 30

    await backup.async_pre_backup(hass)
    wal_size, points = await hass.async_add_executor_job(
        _copy_main_file, spool_path(hass, entry), tmp_path / "backup"
    )
    await backup.async_post_backup(hass)

    assert wal_size == 0
    assert points == spool.points


async def test_backup_goes_on_when_a_spool_cannot_checkpoint(
    hass: HomeAssistant,
    influxdb_v1: InfluxDB1Server,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A spool that cannot prepare for a backup is logged once per call and never
    fails the user's backup."""
    entry = _v1_entry(influxdb_v1)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    spool = entry.runtime_data.pipeline.spool
    await hass.async_add_executor_job(spool.close)

    with caplog.at_level(logging.WARNING):
        await backup.async_pre_backup(hass)
        await backup.async_post_backup(hass)

    warnings = [
        r
        for r in caplog.records
        if r.name.startswith(backup.__package__) and r.levelno >= logging.WARNING
    ]
    assert [(r.levelno, r.exc_info) for r in warnings] == [
        (logging.WARNING, None),
        (logging.WARNING, None),
    ]
    assert all("the spool is closed" in r.getMessage() for r in warnings)
    await hass.async_add_executor_job(spool.open)
