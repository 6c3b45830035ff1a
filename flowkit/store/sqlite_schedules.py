"""Schedules, fires and the scheduler lease in SQLite (part of :class:`~flowkit.store.sqlite.SQLiteMetadataStore`).

A fire's primary key is (schedule, slot) and a claim is ``INSERT OR IGNORE``
inside one ``BEGIN IMMEDIATE`` transaction, so of two schedulers claiming the
same slot exactly one inserts it (``INSERT ... ON CONFLICT DO NOTHING``). The lease is one row (``id = 1``) read and
replaced in one transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from flowkit.store.protocols import FireRecord, ScheduleRecord

__all__ = ["ScheduleTables"]

T = TypeVar("T")

_SCHEDULE_COLUMNS = ("name, flow_ref, flow, expr, tz, catchup, overlap, max_catchup, params, params_pickle, paused, "
                     "created, checked")
_FIRE_COLUMNS = "schedule, slot, status, run_id, holder, fired"


def _schedule(r: tuple[Any, ...]) -> ScheduleRecord:
    return ScheduleRecord(*r[:10], bool(r[10]), r[11], r[12])


class ScheduleTables:
    """The schedule part of the metadata protocol, over the ``write``/``query`` of the SQLite store."""

    write: Callable[[Callable[[sqlite3.Connection], Any]], Any]
    query: Callable[..., list[tuple[Any, ...]]]

    # --- schedules -----------------------------------------------------------------------------

    def put_schedule(self, record: ScheduleRecord) -> None:
        row = (record.name, record.flow_ref, record.flow, record.expr, record.tz, record.catchup, record.overlap,
               record.max_catchup, record.params, record.params_pickle, int(record.paused), record.created,
               record.checked)
        self.write(lambda c: c.execute(
            f"INSERT INTO schedules ({_SCHEDULE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET flow_ref = excluded.flow_ref, flow = excluded.flow, "
            "expr = excluded.expr, tz = excluded.tz, catchup = excluded.catchup, overlap = excluded.overlap, "
            "max_catchup = excluded.max_catchup, params = excluded.params, params_pickle = excluded.params_pickle, "
            "checked = MAX(schedules.checked, excluded.checked)", row))  # a paused schedule stays paused

    def schedules(self) -> list[ScheduleRecord]:
        return [_schedule(r) for r in self.query(f"SELECT {_SCHEDULE_COLUMNS} FROM schedules ORDER BY name")]

    def delete_schedule(self, name: str) -> None:
        self.write(lambda c: c.execute("DELETE FROM schedules WHERE name = ?", (name,)))

    def set_paused(self, name: str, paused: bool, checked: float | None = None) -> None:
        if checked is None:
            self.write(lambda c: c.execute("UPDATE schedules SET paused = ? WHERE name = ?", (int(paused), name)))
        else:
            self.write(lambda c: c.execute("UPDATE schedules SET paused = ?, checked = MAX(checked, ?) WHERE name = ?",
                                           (int(paused), checked, name)))

    # --- fires ---------------------------------------------------------------------------------

    def claim_fires(self, schedule: str, due: Sequence[float], missed: Sequence[float], *, holder: str,
                    now: float, skip: bool = False, skip_if_other_running: bool = False) -> list[float]:
        def claim(c: sqlite3.Connection) -> list[float]:
            busy = skip or (skip_if_other_running and _other_running(c, schedule, holder, now))
            c.executemany(f"INSERT INTO fires ({_FIRE_COLUMNS}) VALUES (?, ?, 'missed', NULL, ?, ?) ON CONFLICT DO NOTHING",
                          [(schedule, slot, holder, now) for slot in missed])
            got = []
            for slot in due:
                cur = c.execute(f"INSERT INTO fires ({_FIRE_COLUMNS}) VALUES (?, ?, ?, NULL, ?, ?) ON CONFLICT DO NOTHING",
                                (schedule, slot, "skipped" if busy else "pending", holder, now))
                if cur.rowcount == 1 and not busy:
                    got.append(slot)
            c.execute("UPDATE schedules SET checked = MAX(checked, ?) WHERE name = ?", (now, schedule))
            return got

        return list(self.write(claim))

    def set_fire_status(self, schedule: str, slots: Sequence[float], status: str,
                        run_ids: Sequence[str] | None = None) -> None:
        if run_ids is None:
            rows: list[tuple[Any, ...]] = [(status, schedule, slot) for slot in slots]
            sql = "UPDATE fires SET status = ? WHERE schedule = ? AND slot = ?"
        else:
            if len(run_ids) != len(slots):
                raise ValueError(f"{len(slots)} slots but {len(run_ids)} run ids")
            rows = [(status, run_id, schedule, slot) for slot, run_id in zip(slots, run_ids)]
            sql = "UPDATE fires SET status = ?, run_id = ? WHERE schedule = ? AND slot = ?"
        self.write(lambda c: c.executemany(sql, rows))

    def abandon_fires(self, holder: str) -> int:
        where = ("status IN ('pending', 'running') AND holder != ? AND "
                 "(run_id IS NULL OR NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = fires.run_id))")
        if not self.query(f"SELECT 1 FROM fires WHERE {where} LIMIT 1", (holder,)):
            return 0  # the common tick: a read, no write
        return int(self.write(lambda c: c.execute(f"UPDATE fires SET status = 'crashed' WHERE {where}",
                                                  (holder,)).rowcount))

    def fires(self, schedule: str | None = None) -> list[FireRecord]:
        where, params = (" WHERE schedule = ?", (schedule,)) if schedule is not None else ("", ())
        rows = self.query(f"SELECT {_FIRE_COLUMNS} FROM fires{where} ORDER BY slot, schedule", params)
        return [FireRecord(*r) for r in rows]

    def fire(self, schedule: str, slot: float) -> FireRecord | None:
        rows = self.query(f"SELECT {_FIRE_COLUMNS} FROM fires WHERE schedule = ? AND slot = ?", (schedule, slot))
        return FireRecord(*rows[0]) if rows else None

    # --- the lease -----------------------------------------------------------------------------

    def take_lease(self, holder: str, now: float, seconds: float) -> bool:
        def take(c: sqlite3.Connection) -> bool:
            row = c.execute("SELECT holder, expires FROM lease WHERE id = 1").fetchone()
            if row is not None and row[0] != holder and row[1] > now:
                return False
            c.execute("INSERT INTO lease (id, holder, expires) VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                      "holder = excluded.holder, expires = excluded.expires", (holder, now + seconds))
            return True

        return bool(self.write(take))

    def release_lease(self, holder: str) -> None:
        self.write(lambda c: c.execute("DELETE FROM lease WHERE id = 1 AND holder = ?", (holder,)))


def _other_running(c: sqlite3.Connection, schedule: str, holder: str, now: float) -> bool:
    """Whether the schedule's latest unfinished fire belongs to another scheduler that still holds the lease."""
    row = c.execute("SELECT holder FROM fires WHERE schedule = ? AND status IN ('pending', 'running') "
                    "ORDER BY slot DESC LIMIT 1", (schedule,)).fetchone()
    if row is None or row[0] == holder:
        return False  # ours, and not running any more: it ended without updating (a crash of the run)
    lease = c.execute("SELECT holder, expires FROM lease WHERE id = 1").fetchone()
    return lease is not None and lease[0] == row[0] and lease[1] > now
