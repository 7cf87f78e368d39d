"""Templates: every event renders, HTML is escaped, and the committed examples are current."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from licsync.notify import render_examples
from licsync.notify.render import EVENTS, render

DOCS = Path(__file__).resolve().parents[2] / "docs" / "notifications" / "examples"


def test_render_examples_cover_every_event_and_match_the_committed_docs(tmp_path: Path) -> None:
    written = render_examples.render_examples(tmp_path)
    names = {p.name for p in written}
    assert {f"{e}.txt" for e in EVENTS} <= names and {f"{e}.html" for e in EVENTS} <= names
    catalog = {n.split(".")[0] for n in names if ".catalog." in n}
    assert catalog == {"usage_threshold", "grace_started", "grace_reminder", "grace_ends_tomorrow",
                       "grace_enforced", "grace_ended", "subscription_expiring"}
    stale = [p.name for p in written if not (DOCS / p.name).is_file()
             or (DOCS / p.name).read_text(encoding="utf-8") != p.read_text(encoding="utf-8")]
    assert not stale, f"run `python -m licsync.notify.render_examples docs/notifications`; stale: {stale}"


def test_catalog_examples_hold_no_other_catalog() -> None:
    for p in DOCS.glob("*.catalog.*"):
        text = p.read_text(encoding="utf-8")
        assert "Sales Academy" in text and "Safety" not in text and "[safety]" not in text, p.name


def test_html_is_escaped_and_text_is_not() -> None:
    ctx = {"tenant": "contoso", "audience": "tenant", "now": render_examples.NOW, "contacts": [],
           "figures": None, "catalogs": [], "subscription": None, "failures": 3,
           "error": "<script>alert(1)</script> & more"}
    r = render("sync_failing", ctx)
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in r.html and "<script>" not in r.html
    assert "<script>alert(1)</script> & more" in r.text
    assert r.subject == "[licsync] contoso: sync failing (3 cycles in a row)"


def test_a_missing_figure_is_an_error_not_a_blank() -> None:
    with pytest.raises(Exception, match="undefined"):
        render("sync_failing", {"tenant": "contoso", "audience": "tenant", "now": render_examples.NOW})
    with pytest.raises(ValueError, match="no template"):
        render("nope", {})


def _threshold(consumed: int, purchased: int, threshold: int) -> Any:
    figures = {"purchased": purchased, "consumed": consumed, "available": max(0, purchased - consumed),
               "overage": max(0, consumed - purchased), "usage_pct": round(100 * consumed / purchased, 1)}
    return render("usage_threshold", {"tenant": "contoso", "audience": "tenant", "now": render_examples.NOW,
                                      "contacts": [], "figures": figures, "catalogs": [], "subscription": None,
                                      "threshold": threshold})


def test_over_the_maximum_is_not_titled_100_percent() -> None:
    r = _threshold(39, 30, 100)
    assert r.subject == "[licsync] contoso: over the seat maximum, 39 seats in use for 30 (130 %)"
    assert "above the seat maximum: 39 seats are in use for 30 purchased (130 %, 9 over)" in r.text
    assert "above the seat maximum" in r.html
    assert _threshold(90, 100, 90).subject == "[licsync] contoso: 90 % of seats in use (90 of 100)"


def test_the_figures_say_when_they_were_counted() -> None:
    """A message is queued by a cycle and may be sent later: its figures carry their instant."""
    r = _threshold(42, 50, 80)
    assert "42 of 50 seats are in use, 8 available, as of 2026-11-22 10:00 UTC." in r.text
    assert "Seats of contoso as of 2026-11-22 10:00 UTC" in r.text
    assert "as of 2026-11-22 10:00 UTC" in r.html
