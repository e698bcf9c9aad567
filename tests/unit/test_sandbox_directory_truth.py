"""The directory's truth at its boundaries, against a frozen clock: the counts an
inventory's tests trust must be exact where ``<`` and ``<=`` differ."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sandbox.directory import DirCredential, Directory, DirObject
from sandbox.directory_gen import populate

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
TICK = timedelta(microseconds=1)
DAY = timedelta(days=1)


def directory_with(*ends: datetime, kind: str = "password") -> Directory:
    directory = Directory(lambda: NOW, "tenant")
    creds = [
        DirCredential(kind, f"key-{i}", None, NOW - 400 * DAY, end)  # type: ignore[arg-type]
        for i, end in enumerate(ends)
    ]
    app = DirObject(
        kind="applications",
        id="app",
        app_id="appid",
        display_name="app",
        tags=[],
        passwords=creds if kind == "password" else [],
        keys=creds if kind == "certificate" else [],
        props={},
        order=1,
    )
    directory.put(app)
    return directory


@pytest.mark.parametrize(
    ("end", "expired", "within_7", "within_30"),
    [
        (NOW - DAY, 1, 0, 0),
        (NOW, 1, 0, 0),  # ends now: expired, no longer "expiring"
        (NOW + TICK, 0, 1, 1),
        (NOW + 7 * DAY, 0, 1, 1),  # the 7-day boundary is inside
        (NOW + 7 * DAY + TICK, 0, 0, 1),
        (NOW + 30 * DAY, 0, 0, 1),  # and so is the 30-day one
        (NOW + 30 * DAY + TICK, 0, 0, 0),
        (NOW + 700 * DAY, 0, 0, 0),
    ],
)
@pytest.mark.parametrize("kind", ["password", "certificate"])
def test_boundaries(end: datetime, expired: int, within_7: int, within_30: int, kind: str) -> None:
    truth = directory_with(end, kind=kind).truth()
    assert truth["expired"] == expired
    assert truth["expiring_within_7_days"] == within_7
    assert truth["expiring_within_30_days"] == within_30
    other = "certificate" if kind == "password" else "password"
    assert truth["credentials"] == {kind: 1, other: 0}
    assert truth["applications"] == 1


def test_service_principals_are_counted_apart() -> None:
    directory = directory_with(NOW + DAY)
    directory.put(
        DirObject(
            kind="servicePrincipals",
            id="sp",
            app_id="appid",
            display_name="sp",
            tags=[],
            passwords=[DirCredential("password", "k", None, NOW - DAY, NOW - TICK)],
            keys=[],
            props={},
            order=2,
        )
    )
    truth = directory.truth()
    assert (truth["expired"], truth["expiring_within_7_days"]) == (0, 1)  # apps only
    assert truth["service_principals"] == 1
    assert truth["service_principal_credentials"] == {"password": 1, "certificate": 0}


def test_generated_expiries_keep_an_hour_from_every_boundary() -> None:
    directory = Directory(lambda: NOW, "tenant")
    populate(directory, 3000, 0, seed=3)
    ends = [
        c.end - NOW
        for app in directory.collections["applications"].objects.values()
        for c in app.credentials()
    ]
    assert min(ends) >= -365 * DAY
    assert max(ends) <= 730 * DAY
    for boundary in (timedelta(0), 7 * DAY, 30 * DAY):
        assert min(abs(e - boundary) for e in ends) > timedelta(hours=1)
