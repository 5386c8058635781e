"""Installed charging profiles: held in memory, kept in the agent's store.

Responsibilities:

- `ProfileStore.install`: validate a profile (agent.core.profiles.validate_profile),
  apply the conflict rules against the installed ones and install it, all or nothing:
  the removal of the profiles it replaces and the insert are one transaction, written on
  the store's writer (off the event loop, with its fsync), and `install` returns once it
  is durable, so SetChargingProfile answers Accepted only for a profile a power cut
  cannot take back. A rejected profile changes nothing; a profile the store refuses is
  taken back out (ProfileNotStoredError).
- the conflict rules, chosen per call (`ConflictRule`), because the two OCPP versions
  differ and the adapters pick:
  - `REPLACE` (OCPP 1.6 section 3.13.2): a profile with the id of an installed one
    replaces it; so does one with the same purpose and stack level on the same EVSE.
    A TX_DEFAULT profile on EVSE n never replaces the one on EVSE 0: it overrides it
    "only for that specific connector" (1.6 section 3.13.1), which the composite
    schedule does by shadowing (agent/core/composite.py).
  - `REFUSE_OVERLAP` (OCPP 2.0.1 K01): the same id replaces (K01.FR.05); a different
    profile with the same purpose and stack level on the same EVSE is refused if the
    validity windows overlap (K01.FR.06), a TX profile with the stack level and
    transaction of another is refused (K01.FR.39), and TX_DEFAULT profiles on EVSE 0
    and on an EVSE may not share a stack level (K01.FR.52, K01.FR.53).
- reads for the composite schedule and for the CSMS's queries, and removals by
  criteria (ClearChargingProfile), by transaction (a TX profile ends with its
  transaction, 1.6 section 3.13.1) and by expiry.

The installed set lives in memory (a few dozen profiles at most, read from the store
once at start), so the smart-charging loop's frequent reads and expiry checks never run
SQL. Every change shows to readers at once and is written behind on the store's writer
(`start_write`, one transaction and one fsync each, never on the event loop);
`install` alone waits for its write (above), and `install_soon` is the same install for
callers that cannot wait (a remote start's profile, bound when its transaction begins).
A profile is stored as JSON (its whole model) beside the columns that describe it.

A store that refuses writes (a full disk, a read-only store, an I/O error): `install`
raises ProfileNotStoredError (a ProfileRejectedError: the CSMS hears Rejected, 2.0.1
reasonCode OutOfStorage) and nothing is installed; any other change holds in memory (a
removal never fails ClearChargingProfile or the smart-charging loop's clean-up), is
logged, and the next write that succeeds rewrites the table whole. A restart before then
brings back what the table still had. Over a store that keeps nothing beyond the process
(`memory_only`: fleet mode) nothing is written at all.

This module must not: know an OCPP version's wire names (the adapters map
`ProfileRejectedError.reason` to Rejected and an empty `clear` result to Unknown), compute
limits (agent/core/composite.py does), or read a clock (callers pass `now`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from agent.core.profiles import (
    ChargingProfile,
    ChargingSchedule,
    ProfileKind,
    ProfileLimits,
    ProfilePurpose,
    RateUnit,
    Recurrence,
    RejectReason,
    SchedulePeriod,
    validate_profile,
)
from agent.store.interface import TableHost
from agent.store.writer import describe

__all__ = [
    "ConflictRule",
    "ProfileNotStoredError",
    "ProfileRejectedError",
    "ProfileStore",
    "decode_profile",
    "encode_profile",
]

_log = logging.getLogger(__name__)

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US: Final = timedelta(microseconds=1)

_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS charging_profiles (
        profile_id     INTEGER PRIMARY KEY,
        evse_id        INTEGER NOT NULL,
        purpose        TEXT    NOT NULL,
        stack_level    INTEGER NOT NULL,
        transaction_id TEXT,
        valid_to_us    INTEGER,
        body           TEXT    NOT NULL
    )""",
    """CREATE INDEX IF NOT EXISTS charging_profiles_slot
        ON charging_profiles (purpose, evse_id, stack_level)""",
    """CREATE INDEX IF NOT EXISTS charging_profiles_tx
        ON charging_profiles (transaction_id) WHERE transaction_id IS NOT NULL""",
)


class ConflictRule(StrEnum):
    """How a new profile meets installed ones that occupy its place (module docstring)."""

    REPLACE = "replace"
    REFUSE_OVERLAP = "refuse_overlap"


class ProfileRejectedError(Exception):
    """A profile was not installed; `reason` says why. Nothing was changed."""

    def __init__(self, reason: RejectReason, detail: str = "") -> None:
        """Carry `reason` (and a human-readable `detail` for the log)."""
        super().__init__(f"{reason}: {detail}" if detail else str(reason))
        self.reason = reason


class ProfileNotStoredError(ProfileRejectedError):
    """The store refused to write the profile (a full disk, a read-only store, an I/O
    error); nothing was installed. Its reason is TOO_MANY_PROFILES: there is no room for
    one more (2.0.1 answers OutOfStorage, 1.6 Rejected)."""

    def __init__(self, detail: str) -> None:
        """Carry a human-readable `detail` (the store's error) for the log."""
        super().__init__(RejectReason.TOO_MANY_PROFILES, detail)


# -- encoding ----------------------------------------------------------------------------


def _time_text(at: datetime | None) -> str | None:
    """ISO 8601 UTC text for an aware datetime (None stays None)."""
    return None if at is None else at.astimezone(UTC).isoformat()


def _time_of(text: str | None) -> datetime | None:
    """The aware UTC datetime written by `_time_text` (None stays None)."""
    return None if text is None else datetime.fromisoformat(text).astimezone(UTC)


def _to_us(at: datetime | None) -> int | None:
    """Microseconds since the epoch (None stays None)."""
    return None if at is None else (at - _EPOCH) // _ONE_US


def encode_profile(profile: ChargingProfile) -> str:
    """The profile as JSON text (the store's format; times as ISO 8601 UTC)."""
    schedule = profile.schedule
    return json.dumps(
        {
            "profile_id": profile.profile_id,
            "evse_id": profile.evse_id,
            "purpose": str(profile.purpose),
            "stack_level": profile.stack_level,
            "kind": str(profile.kind),
            "recurrence": None if profile.recurrence is None else str(profile.recurrence),
            "valid_from": _time_text(profile.valid_from),
            "valid_to": _time_text(profile.valid_to),
            "transaction_id": profile.transaction_id,
            "schedule": {
                "rate_unit": str(schedule.rate_unit),
                "start_schedule": _time_text(schedule.start_schedule),
                "duration_s": schedule.duration_s,
                "min_charging_rate": schedule.min_charging_rate,
                "periods": [
                    [period.start_s, period.limit, period.number_phases]
                    for period in schedule.periods
                ],
            },
        },
        separators=(",", ":"),
        allow_nan=False,
    )


def decode_profile(text: str) -> ChargingProfile:
    """The profile `encode_profile` wrote; raise ValueError/KeyError if it is not one."""
    data: dict[str, Any] = json.loads(text)
    schedule: dict[str, Any] = data["schedule"]
    recurrence = data["recurrence"]
    return ChargingProfile(
        profile_id=int(data["profile_id"]),
        evse_id=int(data["evse_id"]),
        purpose=ProfilePurpose(data["purpose"]),
        stack_level=int(data["stack_level"]),
        kind=ProfileKind(data["kind"]),
        recurrence=None if recurrence is None else Recurrence(recurrence),
        valid_from=_time_of(data["valid_from"]),
        valid_to=_time_of(data["valid_to"]),
        transaction_id=data["transaction_id"],
        schedule=ChargingSchedule(
            rate_unit=RateUnit(schedule["rate_unit"]),
            start_schedule=_time_of(schedule["start_schedule"]),
            duration_s=schedule["duration_s"],
            min_charging_rate=schedule["min_charging_rate"],
            periods=tuple(
                SchedulePeriod(int(start_s), float(limit), phases)
                for start_s, limit, phases in schedule["periods"]
            ),
        ),
    )


def _overlap(a: ChargingProfile, b: ChargingProfile) -> bool:
    """Whether the validity windows of `a` and `b` share an instant."""
    a_before_b_ends = a.valid_from is None or b.valid_to is None or a.valid_from < b.valid_to
    b_before_a_ends = b.valid_from is None or a.valid_to is None or b.valid_from < a.valid_to
    return a_before_b_ends and b_before_a_ends


# -- the store -----------------------------------------------------------------------------

_INSERT: Final = (
    "INSERT OR REPLACE INTO charging_profiles (profile_id, evse_id, purpose, stack_level,"
    " transaction_id, valid_to_us, body) VALUES (?, ?, ?, ?, ?, ?, ?)"
)

Write = Callable[[sqlite3.Connection], None]


def _row(profile: ChargingProfile) -> tuple[object, ...]:
    """The table's row of `profile` (its transaction column only for TX profiles)."""
    tx_key = profile.transaction_id if profile.purpose is ProfilePurpose.TX else None
    return (
        profile.profile_id,
        profile.evse_id,
        str(profile.purpose),
        profile.stack_level,
        tx_key,
        _to_us(profile.valid_to),
        encode_profile(profile),
    )


def _replace_write(removed: Collection[int], added: ChargingProfile | None) -> Write:
    """A write that deletes profiles by id and inserts one (idempotent)."""
    gone = [(profile_id,) for profile_id in sorted(removed)]
    row = None if added is None else _row(added)

    def apply(conn: sqlite3.Connection) -> None:
        conn.executemany("DELETE FROM charging_profiles WHERE profile_id = ?", gone)
        if row is not None:
            conn.execute(_INSERT, row)

    return apply


def _rewrite(profiles: Collection[ChargingProfile]) -> Write:
    """A write that makes the table hold exactly `profiles`."""
    rows = [_row(profile) for profile in profiles]

    def apply(conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM charging_profiles")
        conn.executemany(_INSERT, rows)

    return apply


class ProfileStore:
    """The installed charging profiles (in memory; durable in the store, so they
    survive restarts). Used from the event loop's thread."""

    def __init__(self, store: TableHost) -> None:
        """Use `store`'s database, creating this module's table if missing and reading
        the installed profiles (a store that refuses writes is logged: the table of an
        earlier start is still read). Over a `memory_only` store, start empty."""
        self._store = store
        self._memory_only = store.memory_only
        self._profiles: dict[int, ChargingProfile] = {}
        #: A change was not written (the store refused it): rewrite the table whole at
        #: the next write. Set on the store's writer thread, read on the loop's: a flag.
        self._stale = False
        self._last_write: Future[None] | None = None
        if not self._memory_only:
            self._profiles = self._read(store)

    @staticmethod
    def _read(store: TableHost) -> dict[int, ChargingProfile]:
        """The profiles installed in `store`, by id (a row that does not decode is
        logged and left out)."""
        try:
            with store.writing() as conn:
                for statement in _SCHEMA:
                    conn.execute(statement)
        except sqlite3.OperationalError as exc:
            _log.error("charging profile table not created: %s", describe(exc))
        try:
            rows = store.connection.execute(
                "SELECT profile_id, body FROM charging_profiles ORDER BY profile_id"
            ).fetchall()
        except sqlite3.OperationalError as exc:
            _log.error("charging profiles not read: %s", describe(exc))
            return {}
        profiles: dict[int, ChargingProfile] = {}
        for profile_id, body in rows:
            try:
                profiles[int(profile_id)] = decode_profile(body)
            except (ValueError, KeyError, TypeError) as exc:
                _log.error("stored charging profile %s ignored: %r", profile_id, exc)
        return profiles

    # -- install --------------------------------------------------------------------------

    async def install(
        self,
        profile: ChargingProfile,
        limits: ProfileLimits,
        *,
        conflicts: ConflictRule = ConflictRule.REPLACE,
        active_transactions: Mapping[int, str] | None = None,
    ) -> tuple[int, ...]:
        """Install `profile` and return, once it is durable, the ids of the profiles it
        replaced, in order. Readers see the new set from the call on.

        Raises ProfileRejectedError if the profile is invalid (see validate_profile, which
        gets `limits` and `active_transactions`), conflicts with an installed one under
        `conflicts`, or would exceed `limits.max_installed`, and ProfileNotStoredError if
        the store refuses the write; nothing is changed then. Cancelled, it leaves the
        profile installed (its write goes on).
        """
        replaced, displaced = self._apply(profile, limits, conflicts, active_transactions)
        future = self._write(_replace_write(replaced, profile))
        if future is None:
            return replaced
        try:
            await _uncancellable(future)
        except sqlite3.Error as exc:
            self._undo(profile, displaced)
            _log.error("profile %s not stored: %s", profile.profile_id, describe(exc))
            raise ProfileNotStoredError(
                f"profile {profile.profile_id} not stored: {describe(exc)}"
            ) from exc
        return replaced

    def install_soon(
        self,
        profile: ChargingProfile,
        limits: ProfileLimits,
        *,
        conflicts: ConflictRule = ConflictRule.REPLACE,
        active_transactions: Mapping[int, str] | None = None,
    ) -> tuple[int, ...]:
        """`install` for a caller that cannot wait: the profile is installed when this
        returns and written behind (a refusal is logged and the next write catches up).

        Raises ProfileRejectedError as `install` does (nothing is changed then).
        """
        replaced, _ = self._apply(profile, limits, conflicts, active_transactions)
        self._write(_replace_write(replaced, profile))
        return replaced

    def _apply(
        self,
        profile: ChargingProfile,
        limits: ProfileLimits,
        conflicts: ConflictRule,
        active_transactions: Mapping[int, str] | None,
    ) -> tuple[tuple[int, ...], dict[int, ChargingProfile]]:
        """Check `profile` and install it in memory; return the ids it replaced and the
        profiles it displaced (for `_undo`). Raises ProfileRejectedError, changing nothing."""
        reason = validate_profile(profile, limits, active_transactions=active_transactions)
        if reason is not None:
            raise ProfileRejectedError(reason, f"profile {profile.profile_id}")
        if conflicts is ConflictRule.REPLACE:
            replaced = self._replaced_by(profile)
        else:
            replaced = self._refusing_overlap(profile)
        if limits.max_installed is not None:
            remaining = len(self._profiles) - len(replaced)
            if remaining + 1 > limits.max_installed:
                raise ProfileRejectedError(
                    RejectReason.TOO_MANY_PROFILES,
                    f"{remaining} installed, MaxChargingProfilesInstalled is"
                    f" {limits.max_installed}",
                )
        displaced = {profile_id: self._profiles.pop(profile_id) for profile_id in replaced}
        self._profiles[profile.profile_id] = profile
        return replaced, displaced

    def _undo(self, profile: ChargingProfile, displaced: Mapping[int, ChargingProfile]) -> None:
        """Take back an install the store refused (what changed since stays)."""
        if self._profiles.get(profile.profile_id) is profile:
            del self._profiles[profile.profile_id]
        for profile_id, old in displaced.items():
            self._profiles.setdefault(profile_id, old)

    def _replaced_by(self, profile: ChargingProfile) -> tuple[int, ...]:
        """Ids `profile` replaces under 1.6 section 3.13.2: same id, or same place."""
        return tuple(
            other.profile_id
            for other in self._sorted()
            if other.profile_id == profile.profile_id
            or (
                other.purpose is profile.purpose
                and other.evse_id == profile.evse_id
                and other.stack_level == profile.stack_level
            )
        )

    def _refusing_overlap(self, profile: ChargingProfile) -> tuple[int, ...]:
        """Ids `profile` replaces under 2.0.1 K01 (same id only); raise ProfileRejectedError
        if another installed profile conflicts with it."""
        for other in self._sorted():
            if (
                other.profile_id == profile.profile_id
                or other.purpose is not profile.purpose
                or other.stack_level != profile.stack_level
            ):
                continue
            if profile.purpose is ProfilePurpose.TX:
                if other.transaction_id == profile.transaction_id:  # K01.FR.39
                    raise self._conflict(profile, other, "same stack level and transaction")
            elif other.evse_id == profile.evse_id:
                if _overlap(profile, other):  # K01.FR.06
                    raise self._conflict(profile, other, "same place, overlapping validity")
            elif profile.purpose is ProfilePurpose.TX_DEFAULT and 0 in (
                profile.evse_id,
                other.evse_id,
            ):  # K01.FR.52, K01.FR.53
                raise self._conflict(profile, other, "EVSE 0 and an EVSE on one stack level")
        return (profile.profile_id,) if profile.profile_id in self._profiles else ()

    @staticmethod
    def _conflict(
        profile: ChargingProfile, other: ChargingProfile, why: str
    ) -> ProfileRejectedError:
        """The rejection of `profile` because of installed `other`."""
        return ProfileRejectedError(
            RejectReason.CONFLICTING_PROFILE,
            f"profile {profile.profile_id} conflicts with {other.profile_id}: {why}",
        )

    # -- reads ----------------------------------------------------------------------------

    def _sorted(self) -> list[ChargingProfile]:
        """Every installed profile, by id."""
        return [self._profiles[profile_id] for profile_id in sorted(self._profiles)]

    def count(self) -> int:
        """How many profiles are installed."""
        return len(self._profiles)

    def get(self, profile_id: int) -> ChargingProfile | None:
        """The installed profile with id `profile_id`, or None."""
        return self._profiles.get(profile_id)

    def profiles(
        self,
        *,
        profile_ids: Collection[int] | None = None,
        evse_id: int | None = None,
        purpose: ProfilePurpose | None = None,
        stack_level: int | None = None,
    ) -> list[ChargingProfile]:
        """The installed profiles matching every given criterion, by id.

        With no criteria: every installed profile (the composite schedule's input).
        """
        matches = _criteria(profile_ids, evse_id, purpose, stack_level)
        return [profile for profile in self._sorted() if matches(profile)]

    # -- removals -------------------------------------------------------------------------

    def clear(
        self,
        *,
        profile_ids: Collection[int] | None = None,
        evse_id: int | None = None,
        purpose: ProfilePurpose | None = None,
        stack_level: int | None = None,
    ) -> list[int]:
        """Remove the profiles matching every given criterion (no criteria: all of them);
        return their ids, empty if none matched."""
        return self._remove(_criteria(profile_ids, evse_id, purpose, stack_level))

    def clear_transaction(self, transaction_id: str) -> list[int]:
        """Remove the TX profiles of a transaction that ended; return their ids."""
        return self._remove(
            lambda p: p.purpose is ProfilePurpose.TX and p.transaction_id == transaction_id
        )

    def clear_expired(self, now: datetime) -> list[int]:
        """Remove the profiles whose validity ended at or before `now`; return their ids.

        Raises ValueError if `now` is naive.
        """
        if now.utcoffset() is None:
            raise ValueError(f"naive datetime {now!r}: the store takes aware times")
        return self._remove(lambda p: p.valid_to is not None and p.valid_to <= now)

    def _remove(self, matches: Callable[[ChargingProfile], bool]) -> list[int]:
        """Remove the matching profiles now and write the removal behind; return their ids."""
        ids = [profile.profile_id for profile in self._sorted() if matches(profile)]
        if not ids:
            return []  # nothing to write (the smart-charging loop asks often)
        for profile_id in ids:
            del self._profiles[profile_id]
        self._write(_replace_write(ids, None))
        return ids

    # -- writing --------------------------------------------------------------------------

    def _write(self, action: Write) -> Future[None] | None:
        """Queue `action` on the store's writer (after a refused write: a rewrite of the
        whole table from memory instead); None when nothing is written (`memory_only`,
        or the store is closed)."""
        if self._memory_only:
            return None
        if self._stale:
            self._stale = False
            action = _rewrite(list(self._profiles.values()))
        try:
            future = self._store.start_write(action)
        except sqlite3.ProgrammingError:  # the store closed first (shutting down)
            _log.warning("charging profile change not written: the store is closed")
            return None
        future.add_done_callback(self._written)
        self._last_write = future
        return future

    async def written(self) -> bool:
        """Wait until every change so far has been written or refused; True if the store
        holds what readers see (False: a refused change waits for the next write)."""
        last = self._last_write
        if last is not None and not last.done():
            # Writes run in order: the last one done, all are. A failure sets `_stale`.
            with contextlib.suppress(sqlite3.Error):
                await _uncancellable(last)
        return not self._stale

    def _written(self, done: Future[None]) -> None:
        """After a write (on the writer's thread): a refused one leaves the table behind
        memory, so the next write rewrites it whole."""
        exc = None if done.cancelled() else done.exception()
        if exc is None:
            return
        self._stale = True
        _log.warning(
            "charging profiles: a change was not stored (%s); the next write stores them"
            " all (a restart before brings back the stored ones)",
            describe(exc),
        )


async def _uncancellable(future: Future[None]) -> None:
    """Await a write's future; cancelling the waiter leaves the write to run (its
    outcome is then only `ProfileStore._written`'s)."""
    if future.done():
        future.result()
        return
    waited = asyncio.wrap_future(future)
    waited.add_done_callback(lambda done: done.cancelled() or done.exception())  # retrieved
    await asyncio.shield(waited)


def _criteria(
    profile_ids: Collection[int] | None,
    evse_id: int | None,
    purpose: ProfilePurpose | None,
    stack_level: int | None,
) -> Callable[[ChargingProfile], bool]:
    """Whether a profile matches every given criterion (None: any)."""
    ids = None if profile_ids is None else set(profile_ids)

    def matches(profile: ChargingProfile) -> bool:
        return (
            (ids is None or profile.profile_id in ids)
            and (evse_id is None or profile.evse_id == evse_id)
            and (purpose is None or profile.purpose is purpose)
            and (stack_level is None or profile.stack_level == stack_level)
        )

    return matches
