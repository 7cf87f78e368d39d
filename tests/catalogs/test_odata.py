"""The OData connector against its emulator over real HTTP: paging, key, faults, upstream deletions."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine

from licsync import reseat
from licsync.catalogs.emulator import LmsEmulator
from licsync.catalogs.odata import ODataSource, pull
from licsync.config import Settings, TenantConfig
from licsync.db import session_scope
from licsync.db.models import Course, Enrollment
from licsync.errors import ConfigError, PermanentError, TransientError
from tests.catalogs.conftest import NOW, TENANT, freed, open_seats, rows_of, snapshot_tables


def tenant_cfg(url: str, **extra: Any) -> TenantConfig:
    return TenantConfig.model_validate(
        {
            "name": TENANT,
            "tenant_id": "t",
            "client_id": "c",
            "client_secret": "env:LICSYNC_X",
            "lms_url": url,
            "lms_api_key": "env:LICSYNC_TEST_LMS_KEY",
            **extra,
        }
    )


@pytest.fixture
def lms(monkeypatch: pytest.MonkeyPatch) -> Iterator[LmsEmulator]:
    with LmsEmulator(page_size=2) as emu:
        monkeypatch.setenv("LICSYNC_TEST_LMS_KEY", emu.api_key)
        emu.add_catalog("cat1", "Sales", admins=["sales-admin@contoso.com"])
        emu.add_catalog("cat2", "Safety")
        emu.add_catalog("cat3", "Empty")
        emu.add_course("c1", "cat1")
        emu.add_course("c2", "cat1", status="Unpublished")
        emu.add_course("k1", "cat2")
        emu.enroll("c1", "u1")
        emu.enroll("c2", "u2")
        emu.enroll("k1", "u2")
        emu.enroll("k1", "u3")
        emu.enroll("c1", "u4", "Admin")  # admin only: no seat
        yield emu


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def cycle(engine: Engine, settings: Settings, cfg: TenantConfig, sleep: Sleeps | None = None) -> set[str]:
    """What the sync cycle does with the connector: pull, then re-plan the affected users."""
    with session_scope(engine) as s:
        affected = pull(s, settings, cfg, NOW, sleep=sleep if sleep is not None else Sleeps())
        if affected:
            reseat.reseat(s, settings, TENANT, sorted(affected), NOW)
    return affected


def test_pull_reads_every_page_and_takes_seats(db: Engine, settings: Settings, lms: LmsEmulator) -> None:
    affected = cycle(db, settings, tenant_cfg(lms.url))
    assert affected == {"u1", "u2", "u3", "u4"}
    assert open_seats(db) == {"u1": "enrolled", "u2": "enrolled", "u3": "enrolled"}
    # 3 catalogs, 3 courses, 4 learner entries (cat1: u1 u2, cat2: u2 u3), 5 enrollments at 2 a page,
    # and one probe of Activations, which this LMS does not expose (404: it knows no add-on accounts)
    assert lms.requests == 2 + 2 + 2 + 3 + 1
    assert {(r[1], r[4]) for r in rows_of(db, Course)} == {
        ("c1", "published"),
        ("c2", "unpublished"),
        ("k1", "published"),
    }
    assert len(rows_of(db, Enrollment)) == 5
    assert cycle(db, settings, tenant_cfg(lms.url)) == set()  # nothing changed upstream: nothing to do


def test_activations_from_the_lms_hold_seats_until_deactivated(
    db: Engine, settings: Settings, lms: LmsEmulator
) -> None:
    """The connector's Activations entity set feeds the same rule as ``licsync import activations``."""
    cycle(db, settings, tenant_cfg(lms.url))
    lms.activate("fl-1", NOW - timedelta(days=3), name="Line Worker")
    assert cycle(db, settings, tenant_cfg(lms.url)) == {"fl-1"}
    assert open_seats(db)["fl-1"] == "activated"
    lms.deactivate("fl-1", NOW - timedelta(days=1))
    assert cycle(db, settings, tenant_cfg(lms.url)) == {"fl-1"}
    assert "fl-1" not in open_seats(db)


def test_wrong_key_is_permanent_and_changes_nothing(
    db: Engine, settings: Settings, lms: LmsEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    cycle(db, settings, tenant_cfg(lms.url))
    before = snapshot_tables(db)
    monkeypatch.setenv("LICSYNC_TEST_LMS_KEY", "wrong")
    lms.unenroll("c1", "u1")
    with pytest.raises(PermanentError, match="refused the API key"):
        cycle(db, settings, tenant_cfg(lms.url))
    assert snapshot_tables(db) == before


def test_a_failure_mid_pull_changes_nothing(db: Engine, settings: Settings, lms: LmsEmulator) -> None:
    cycle(db, settings, tenant_cfg(lms.url))
    before = snapshot_tables(db)
    lms.delete_course("k1")
    lms.unenroll("c1", "u1")
    lms.fail_next(100, 503, after=3)  # catalogs and the first course page succeed, then 503 for good
    sleeps = Sleeps()
    with pytest.raises(TransientError, match="503"):
        cycle(db, settings, tenant_cfg(lms.url, max_retries=3), sleeps)
    assert len(sleeps) == 3  # bounded retries
    assert snapshot_tables(db) == before
    lms.fail_next(0)
    cycle(db, settings, tenant_cfg(lms.url))
    assert freed(db) == {"u1": "last_enrollment_removed", "u3": "course_deleted"}


def test_throttling_is_retried_with_retry_after(db: Engine, settings: Settings, lms: LmsEmulator) -> None:
    lms.fail_next(2, 429, retry_after="1")
    sleeps = Sleeps()
    cycle(db, settings, tenant_cfg(lms.url), sleeps)
    assert sleeps == [1.0, 1.0]
    assert set(open_seats(db)) == {"u1", "u2", "u3"}


def test_retry_after_beyond_the_limit_gives_up_at_once(db: Engine, settings: Settings, lms: LmsEmulator) -> None:
    lms.fail_next(1, 503, retry_after="3600")
    sleeps = Sleeps()
    with pytest.raises(TransientError) as err:
        cycle(db, settings, tenant_cfg(lms.url), sleeps)
    assert err.value.retry_after == 3600 and sleeps == []


def test_course_deleted_upstream_frees_on_next_pull(db: Engine, settings: Settings, lms: LmsEmulator) -> None:
    cycle(db, settings, tenant_cfg(lms.url))
    lms.set_course_status("c1", "Unpublished")  # unpublished still counts
    assert cycle(db, settings, tenant_cfg(lms.url)) == {"u1"}
    assert freed(db) == {}
    lms.delete_course("c1")  # gone from the listing, like LMS365
    cycle(db, settings, tenant_cfg(lms.url))
    assert freed(db) == {"u1": "course_deleted"}
    assert set(open_seats(db)) == {"u2", "u3"}
    lms.set_course_status("k1", "Deleted")  # or listed as deleted
    cycle(db, settings, tenant_cfg(lms.url))
    assert freed(db) == {"u1": "course_deleted", "u3": "course_deleted"}  # u2 keeps c2


def test_learner_list_removal_upstream(db: Engine, settings: Settings, lms: LmsEmulator) -> None:
    cycle(db, settings, tenant_cfg(lms.url))
    with lms._lock:  # an LMS that lists the enrollment but no longer the learner-list entry
        del lms.state.learners[("cat2", "u3")]
    cycle(db, settings, tenant_cfg(lms.url))
    assert freed(db) == {"u3": "removed_from_learner_list"}
    lms.remove_learner("cat1", "u1")  # LMS365: off the list, and unenrolled from the catalog's training
    cycle(db, settings, tenant_cfg(lms.url))
    assert freed(db)["u1"] == "last_enrollment_removed"


def test_an_empty_listing_is_not_everything_deleted(db: Engine, settings: Settings, lms: LmsEmulator) -> None:
    cycle(db, settings, tenant_cfg(lms.url))
    before = snapshot_tables(db)
    with lms._lock:
        lms.state.catalogs.clear()
    with pytest.raises(PermanentError, match="listed no course catalogs"):
        cycle(db, settings, tenant_cfg(lms.url))
    assert snapshot_tables(db) == before


def test_next_link_may_not_leave_the_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LICSYNC_TEST_LMS_KEY", "k")

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == "Bearer k"
        return httpx.Response(200, json={"value": [{"Id": "x"}], "@odata.nextLink": "https://evil.example/steal"})

    src = ODataSource(tenant_cfg("https://lms.example/odata/v2"), transport=httpx.MockTransport(handler))
    with src, pytest.raises(PermanentError, match="leaves the API's origin"):
        list(src.entities("CourseCatalogs"))


@pytest.mark.parametrize(
    ("item", "message"),
    [({"Title": "no id"}, "has no usable Id"), ({"Id": "c", "CourseCatalogId": "k", "Status": "Archived"}, "Status")],
)
def test_malformed_items_fail_the_pull(monkeypatch: pytest.MonkeyPatch, item: dict[str, Any], message: str) -> None:
    monkeypatch.setenv("LICSYNC_TEST_LMS_KEY", "k")
    transport = httpx.MockTransport(lambda r: httpx.Response(200, json={"value": [item]}))
    src = ODataSource(tenant_cfg("https://lms.example/odata/v2"), transport=transport)
    with src, pytest.raises(PermanentError, match=message):
        src.snapshot()


def test_plain_http_only_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LICSYNC_TEST_LMS_KEY", "k")
    with pytest.raises(ConfigError, match="https"):
        ODataSource(tenant_cfg("http://lms.example/odata/v2"))


def test_tls_trusts_the_ca_bundle_not_the_environment(
    db: Engine, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from licsync.graph.tls import make_test_pki

    pki = make_test_pki(tmp_path / "pki")
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not a certificate\n")
    monkeypatch.setenv("SSL_CERT_FILE", str(bogus))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bogus))
    with LmsEmulator(tls=pki) as emu:
        monkeypatch.setenv("LICSYNC_TEST_LMS_KEY", emu.api_key)
        emu.add_catalog("cat1")
        emu.add_course("c1", "cat1")
        emu.enroll("c1", "u1")
        assert emu.url.startswith("https://")
        with pytest.raises(PermanentError, match="not trusted"):
            cycle(db, settings, tenant_cfg(emu.url))
        assert cycle(db, settings, tenant_cfg(emu.url, ca_bundle=str(pki.ca_cert))) == {"u1"}
    assert open_seats(db) == {"u1": "enrolled"}
