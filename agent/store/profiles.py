"""Installed charging profiles, kept in the agent's SQLite store.

Responsibilities:

- `ProfileStore.install`: validate a profile (agent.core.profiles.validate_profile),
  apply the conflict rules against the installed ones and write it, all or nothing:
  the checks, the removal of the profiles it replaces and the insert run in one SQLite
  transaction, so a rejected profile or a crash leaves the installed set as it was.
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

A profile is stored as JSON (its whole model) beside the columns the queries filter on.
Every method is one small transaction on the Store's connection from the event-loop
thread (`Store.writing`: profiles change rarely, and their callers cannot wait).

A store that refuses writes (a full disk, a read-only store, an I/O error): `install`
raises ProfileNotStoredError (a ProfileRejectedError: the CSMS hears Rejected, 2.0.1
reasonCode OutOfStorage) and nothing is installed; a removal is done in memory (the
profiles no longer show to any reader) and written at the next write that succeeds, so
a full disk never turns ClearChargingProfile or the smart-charging loop's clean-up into
an error. A restart before then brings those profiles back (logged).

This module must not: know an OCPP version's wire names (the adapters map
`ProfileRejectedError.reason` to Rejected and an empty `clear` result to Unknown), compute
limits (agent/core/composite.py does), or read a clock (callers pass `now`).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Collection, Iterable, Mapping
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
from agent.store.sqlite import Store
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


class ProfileStore:
    """The installed charging profiles (durable; survive restarts)."""

    def __init__(self, store: Store) -> None:
        """Use `store`'s database, creating this module's tables if missing (a store that
        refuses writes is logged: the tables of an earlier start are still read)."""
        self._store = store
        self._conn = store.connection
        #: Profiles removed while the store refused the delete: hidden from every reader,
        #: deleted by the next write that succeeds.
        self._doomed: set[int] = set()
        try:
            with store.writing() as conn:
                for statement in _SCHEMA:
                    conn.execute(statement)
        except sqlite3.OperationalError as exc:
            _log.error("charging profile table not created: %s", describe(exc))

    # -- install --------------------------------------------------------------------------

    def install(
        self,
        profile: ChargingProfile,
        limits: ProfileLimits,
        *,
        conflicts: ConflictRule = ConflictRule.REPLACE,
        active_transactions: Mapping[int, str] | None = None,
    ) -> tuple[int, ...]:
        """Install `profile`; return the ids of the profiles it replaced, in order.

        Raises ProfileRejectedError if the profile is invalid (see validate_profile, which
        gets `limits` and `active_transactions`), conflicts with an installed one under
        `conflicts`, or would exceed `limits.max_installed`, and ProfileNotStoredError if
        the store refuses the write; nothing is changed then.
        """
        reason = validate_profile(profile, limits, active_transactions=active_transactions)
        if reason is not None:
            raise ProfileRejectedError(reason, f"profile {profile.profile_id}")
        body = encode_profile(profile)
        try:
            replaced = self._install(profile, body, limits, conflicts)
        except sqlite3.Error as exc:
            _log.error("profile %s not stored: %s", profile.profile_id, describe(exc))
            raise ProfileNotStoredError(
                f"profile {profile.profile_id} not stored: {describe(exc)}"
            ) from exc
        self._doomed.clear()  # deleted in the same transaction
        return replaced

    def _install(
        self, profile: ChargingProfile, body: str, limits: ProfileLimits, conflicts: ConflictRule
    ) -> tuple[int, ...]:
        """Check and write `profile` (encoded as `body`) in one transaction; raise
        ProfileRejectedError (a conflict, too many) or sqlite3.Error (the store refused)."""
        with self._store.writing() as conn:
            self._delete_doomed(conn)
            if conflicts is ConflictRule.REPLACE:
                replaced = self._replaced_by(conn, profile)
            else:
                replaced = self._refusing_overlap(conn, profile)
            if limits.max_installed is not None:
                remaining = self._count(conn) - len(replaced)
                if remaining + 1 > limits.max_installed:
                    raise ProfileRejectedError(
                        RejectReason.TOO_MANY_PROFILES,
                        f"{remaining} installed, MaxChargingProfilesInstalled is"
                        f" {limits.max_installed}",
                    )
            conn.executemany(
                "DELETE FROM charging_profiles WHERE profile_id = ?",
                [(profile_id,) for profile_id in replaced],
            )
            conn.execute(
                "INSERT INTO charging_profiles (profile_id, evse_id, purpose, stack_level,"
                " transaction_id, valid_to_us, body) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    profile.profile_id,
                    profile.evse_id,
                    str(profile.purpose),
                    profile.stack_level,
                    self._tx_key(profile),
                    _to_us(profile.valid_to),
                    body,
                ),
            )
        return replaced

    @staticmethod
    def _tx_key(profile: ChargingProfile) -> str | None:
        """The transaction column: set for TX profiles only (ignored elsewhere)."""
        return profile.transaction_id if profile.purpose is ProfilePurpose.TX else None

    def _replaced_by(self, conn: sqlite3.Connection, profile: ChargingProfile) -> tuple[int, ...]:
        """Ids `profile` replaces under 1.6 section 3.13.2: same id, or same place."""
        rows = conn.execute(
            "SELECT profile_id FROM charging_profiles WHERE profile_id = ?"
            " OR (purpose = ? AND evse_id = ? AND stack_level = ?) ORDER BY profile_id",
            (profile.profile_id, str(profile.purpose), profile.evse_id, profile.stack_level),
        ).fetchall()
        return tuple(int(row[0]) for row in rows)

    def _refusing_overlap(
        self, conn: sqlite3.Connection, profile: ChargingProfile
    ) -> tuple[int, ...]:
        """Ids `profile` replaces under 2.0.1 K01 (same id only); raise ProfileRejectedError
        if another installed profile conflicts with it."""
        purpose = str(profile.purpose)
        rows = conn.execute(
            "SELECT body FROM charging_profiles WHERE purpose = ? AND stack_level = ?"
            " AND profile_id != ?",
            (purpose, profile.stack_level, profile.profile_id),
        ).fetchall()
        for (body,) in rows:
            other = decode_profile(body)
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
        same_id = conn.execute(
            "SELECT profile_id FROM charging_profiles WHERE profile_id = ?",
            (profile.profile_id,),
        ).fetchone()
        return () if same_id is None else (int(same_id[0]),)

    @staticmethod
    def _conflict(
        profile: ChargingProfile, other: ChargingProfile, why: str
    ) -> ProfileRejectedError:
        """The rejection of `profile` because of installed `other`."""
        return ProfileRejectedError(
            RejectReason.CONFLICTING_PROFILE,
            f"profile {profile.profile_id} conflicts with {other.profile_id}: {why}",
        )

    @staticmethod
    def _count(conn: sqlite3.Connection) -> int:
        """How many profiles are installed."""
        return int(conn.execute("SELECT COUNT(*) FROM charging_profiles").fetchone()[0])

    # -- reads ----------------------------------------------------------------------------

    def count(self) -> int:
        """How many profiles are installed."""
        return self._count(self._conn) - len(self._doomed)

    def get(self, profile_id: int) -> ChargingProfile | None:
        """The installed profile with id `profile_id`, or None."""
        if profile_id in self._doomed:
            return None
        row = self._conn.execute(
            "SELECT body FROM charging_profiles WHERE profile_id = ?", (profile_id,)
        ).fetchone()
        return None if row is None else decode_profile(row[0])

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
        where, params = self._criteria(profile_ids, evse_id, purpose, stack_level)
        rows = self._conn.execute(
            f"SELECT profile_id, body FROM charging_profiles{where} ORDER BY profile_id", params
        ).fetchall()
        return [decode_profile(body) for profile_id, body in rows if profile_id not in self._doomed]

    @staticmethod
    def _criteria(
        profile_ids: Collection[int] | None,
        evse_id: int | None,
        purpose: ProfilePurpose | None,
        stack_level: int | None,
    ) -> tuple[str, list[object]]:
        """A WHERE clause (or "") and its parameters for the given criteria."""
        clauses: list[str] = []
        params: list[object] = []
        if profile_ids is not None:
            ids = list(profile_ids)
            clauses.append(f"profile_id IN ({','.join('?' * len(ids))})" if ids else "0")
            params.extend(ids)
        for column, value in (
            ("evse_id", evse_id),
            ("purpose", None if purpose is None else str(purpose)),
            ("stack_level", stack_level),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")  # column names are our constants
                params.append(value)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

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
        where, params = self._criteria(profile_ids, evse_id, purpose, stack_level)
        return self._delete_where(where, params)

    def clear_transaction(self, transaction_id: str) -> list[int]:
        """Remove the TX profiles of a transaction that ended; return their ids."""
        return self._delete_where(" WHERE transaction_id = ?", [transaction_id])

    def clear_expired(self, now: datetime) -> list[int]:
        """Remove the profiles whose validity ended at or before `now`; return their ids.

        Raises ValueError if `now` is naive.
        """
        if now.utcoffset() is None:
            raise ValueError(f"naive datetime {now!r}: the store takes aware times")
        return self._delete_where(
            " WHERE valid_to_us IS NOT NULL AND valid_to_us <= ?", [_to_us(now)]
        )

    def _delete_where(self, where: str, params: Iterable[object]) -> list[int]:
        """Delete the rows selected by `where` in one transaction; return their ids.

        If the store refuses, they are removed in memory (module docstring)."""
        values = list(params)
        rows = self._conn.execute(
            f"SELECT profile_id FROM charging_profiles{where} ORDER BY profile_id", values
        ).fetchall()
        ids = [int(row[0]) for row in rows if int(row[0]) not in self._doomed]
        if not ids and not self._doomed:
            return []  # nothing to write (the smart-charging loop asks often)
        try:
            with self._store.writing() as conn:
                self._delete_doomed(conn)
                conn.execute(f"DELETE FROM charging_profiles{where}", values)
        except sqlite3.Error as exc:
            if ids:
                _log.error(
                    "profiles %s removed in memory only, the store refused (%s): a restart"
                    " before the next successful write brings them back",
                    ids,
                    describe(exc),
                )
            self._doomed.update(ids)
            return ids
        self._doomed.clear()
        return ids

    def _delete_doomed(self, conn: sqlite3.Connection) -> None:
        """Delete the profiles removed in memory only (inside the caller's transaction)."""
        if self._doomed:
            conn.executemany(
                "DELETE FROM charging_profiles WHERE profile_id = ?",
                [(profile_id,) for profile_id in sorted(self._doomed)],
            )
