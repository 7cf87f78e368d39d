"""Human-readable renderings of read models for the terminal (rich)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from licsync.cli.escape import clean


def usage_colour(consumed: int, purchased: int) -> str:
    if purchased <= 0:
        return "red" if consumed else "green"
    pct = 100 * consumed / purchased
    return "red" if pct >= 100 else "yellow" if pct >= 80 else "green"


def print_status(data: dict[str, Any], catalog_only: bool = False) -> None:
    """The status read model for a person. Every stored string (a catalog's name comes from a CSV) is
    made printable and its rich markup escaped first (:func:`licsync.cli.escape.clean`)."""
    console = Console(highlight=False)
    data = clean(data, markup=True)
    if catalog_only:
        console.print(f"catalog {data['id']} ({data['name']}): {data['consumed']} seat holders enrolled")
        return
    sub = data["subscription"]
    colour = usage_colour(data["consumed"], data["purchased"])
    valid = f", valid {sub['starts_at']} → {sub['ends_at']} (expires)" if sub["id"] else ""
    console.print(f"{data['tenant']} — subscription {sub['id'] or '(none)'} \\[{sub['state']}]{valid}")
    console.print(
        f"purchased {data['purchased']}  consumed [{colour}]{data['consumed']}[/{colour}]  "
        f"available {data['available']}  overage {data['overage']}"
    )
    g = data["grace"]
    if g["state"] != "none":
        style = "red" if g["state"] == "enforced" else "yellow"
        left = "" if g.get("days_left") is None else f", {g['days_left']} day(s) left"
        console.print(
            f"[{style}]grace {g['state']} ({g['reason']}): started {g['started_at']}, ends {g['ends_at']}"
            f"{left}[/{style}]",
        )
    if data["catalogs"]:
        t = Table("catalog", "name", "consumed")
        for c in data["catalogs"]:
            t.add_row(c["id"], c["name"], str(c["consumed"]))
        console.print(t)
