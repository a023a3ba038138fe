"""The dashboard and its exports over HTTP, against the running gateway and its database."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.console.dashboard_history import csv_rows

pytestmark = pytest.mark.integration


def figure(html: str, key: str) -> str:
    found = re.search(rf'data-figure="{key}".*?<div class="value">([^<]*)</div>', html, re.S)
    assert found, f"no figure {key}"
    return found.group(1)


def test_dashboard_figures_are_the_databases_own_counts(stack, db, seeded, riverside_staff):
    page = riverside_staff.http.get(f"/console/dashboard?{seeded.query}")
    expected = seeded.counts(db)

    assert page.status_code == 200
    html = page.text
    assert int(figure(html, "missed").replace(",", "")) == expected["missed"]
    assert int(figure(html, "texted").replace(",", "")) == expected["texted"]
    assert int(figure(html, "booked").replace(",", "")) == expected["booked"]
    assert "Synthetic history." in html  # seed-history's calls are never shown as real
    assert html.count('<rect class="heat"') == 7 * 24
    assert 'class="seg-booked"' in html and "<polyline" in html
    assert "<table class=\"chart-table\"" in html  # every chart's numbers, for screen readers


def test_exports_list_the_periods_calls_and_bookings(stack, db, seeded, riverside_staff):
    calls = riverside_staff.http.get(f"/console/dashboard/missed-calls.csv?{seeded.query}")
    bookings = riverside_staff.http.get(f"/console/dashboard/appointments.csv?{seeded.query}")
    expected = seeded.counts(db)

    assert calls.status_code == 200 and calls.headers["content-type"].startswith("text/csv")
    assert calls.headers["content-disposition"] == (
        f'attachment; filename="riverside-missed-calls-{seeded.first}-to-{seeded.last}.csv"')
    rows = csv_rows(calls.text)
    assert len(rows) == expected["missed"]
    assert {row["synthetic"] for row in rows} == {"yes"}
    assert sum(row["outcome"] == "booked" for row in rows) > 0
    assert len(csv_rows(bookings.text)) == expected["appointments"]


def test_bad_periods_are_refused_and_other_clinics_are_not_found(stack, riverside_staff,
                                                                  northside_staff):
    for query, status, words in [
        ("period=fortnight", 400, "no period"),
        ("period=custom&from=2026-02-30&to=2026-03-01", 400, "YYYY-MM-DD"),
        ("period=custom&from=2026-03-02&to=2026-03-01", 400, "ends before it starts"),
        ("period=custom&from=2020-01-01&to=2026-03-01", 400, "at most 366 days"),
        ("clinic=northside", 404, "no such clinic"),
    ]:
        page = riverside_staff.http.get(f"/console/dashboard?{query}")
        assert (page.status_code, words in page.text) == (status, True), query
    export = northside_staff.http.get("/console/dashboard/missed-calls.csv?clinic=riverside")
    assert export.status_code == 404
    assert riverside_staff.http.get("/console/dashboard/patients.csv").status_code == 404
    default = northside_staff.http.get("/console/dashboard")
    assert default.status_code == 200 and "Northside" in default.text


def test_dashboard_and_exports_need_a_sign_in(stack):
    with httpx.Client(base_url=stack.gateway, timeout=30) as anonymous:
        page = anonymous.get("/console/dashboard?period=7d")
        assert page.status_code == 303
        assert page.headers["location"] == "/console/login?next=/console/dashboard%3Fperiod%3D7d"
        assert anonymous.get("/console/dashboard/missed-calls.csv").status_code == 303
