"""The staff console in a real browser (Debian's Chromium, headless), against the real stack.

An urgent text to the clinic appears in the queue without a reload; the receptionist takes the
thread over, replies (the patient's phone gets it), sees the patient's answer arrive live,
hands back to the bot (the bot answers the patient again) and resolves the escalation.
Northside's staff cannot see any of it. A click on the thread's panel is never lost to the
page's polling. The dashboard draws its charts with the database's numbers, and on a phone
(390 x 844) nothing scrolls sideways and Acknowledge is on the first screen of a thread opened
from an alert. An admin invites a locum whom the other clinic's admin adds too; the locum sets
a password by the link, signs in and switches clinic in the header. Screenshots go to
test-artifacts/.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from booking.models import EscalationStatus, ThreadState
from booking.settings import PROJECT_ROOT
from tests.console.conftest import (
    CLINIC_NUMBER,
    URGENT,
    bot_answer,
    escalation_of,
    new_patient,
    thread_of,
    urgent_escalation,
)

pytestmark = [pytest.mark.integration, pytest.mark.browser]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = PROJECT_ROOT / "test-artifacts"
WAIT_MS = 30_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                             headless=True)
        yield browser
        browser.close()


def snapshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"console-{name}.png"), full_page=True)


PHONE = {"width": 390, "height": 844}


def sign_in(browser: Browser, gateway: str, username: str, password: str,
            viewport: dict | None = None) -> Page:
    page = browser.new_context(viewport=viewport or {"width": 1280, "height": 900}).new_page()
    page.goto(f"{gateway}/console/escalations")
    expect(page).to_have_url(f"{gateway}/console/login?next=/console/escalations")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Escalations")).to_be_visible()
    return page


def test_urgent_escalation_taken_over_answered_handed_back_and_resolved(stack, db, browser):
    page = sign_in(browser, stack.gateway, "riverside-admin", "riverside-demo")
    patient = new_patient()

    # The patient's side, through the Twilio simulator: a missed call, then an emergency.
    stack.phone.ring(caller=patient, clinic_number=CLINIC_NUMBER)
    stack.phone.wait_for(patient, count=1)
    stack.phone.text(sender=patient, clinic_number=CLINIC_NUMBER, body=URGENT)

    row = page.locator("#queue-rows tr", has_text=patient)
    expect(row).to_be_visible(timeout=WAIT_MS)  # arrives by polling, no reload
    expect(row).to_contain_text("URGENT")
    expect(row).to_contain_text("open")
    snapshot(page, "01-queue-urgent")
    escalation = escalation_of(db, patient)

    row.get_by_role("link").click()
    messages = page.locator("#messages")
    expect(messages).to_contain_text(URGENT)
    expect(messages).to_contain_text("call 999 now")  # the safety message the bot sent
    card = page.locator(f"#escalation-{escalation.id}")
    expect(card).to_contain_text("Bot told the patient")
    snapshot(page, "02-thread-escalated")

    page.get_by_role("button", name="Take over", exact=True).click()
    expect(page.locator(".flash")).to_contain_text("You have the thread")
    expect(card.locator(".status")).to_have_text("acknowledged")

    reply = "This is Riverside: Dr Patel is calling you in two minutes. Keep your phone free."
    page.get_by_label("Reply to the patient (sms)").fill(reply)
    page.get_by_role("button", name="Send").click()
    stack.phone.wait_for(patient, count=1, where=lambda m: m["body"] == reply)
    expect(messages).to_contain_text(reply)

    stack.phone.text(sender=patient, clinic_number=CLINIC_NUMBER,
                     body="ok thank you, my phone is on")
    expect(messages).to_contain_text("ok thank you, my phone is on", timeout=WAIT_MS)
    snapshot(page, "03-thread-taken-over")

    page.get_by_role("button", name="Hand back to the bot").click()
    expect(page.locator(".flash")).to_contain_text("Handed back")
    expect(page.get_by_label("Reply to the patient (sms)")).to_be_hidden()
    assert thread_of(db, patient).state == ThreadState.bot
    answer = bot_answer(stack, db, patient, "what are your opening hours?")
    expect(messages).to_contain_text(answer.split("\n")[0], timeout=WAIT_MS)

    page.locator(f"#escalation-{escalation.id}").get_by_role("button", name="Resolve").click()
    expect(page.locator(f"#escalation-{escalation.id} .status")).to_have_text("resolved")
    snapshot(page, "04-thread-resolved")
    db.expire_all()
    assert db.get(type(escalation), escalation.id).status == EscalationStatus.resolved

    page.goto(f"{stack.gateway}/console/escalations?status=resolved&reason=urgent")
    expect(page.locator("#queue-rows tr", has_text=patient)).to_contain_text("resolved")

    # Another clinic's receptionist sees none of it.
    other = sign_in(browser, stack.gateway, "northside-admin", "northside-demo")
    other.goto(f"{stack.gateway}/console/escalations?status=all")
    expect(other.locator("#queue-rows")).not_to_contain_text(patient)
    response = other.goto(f"{stack.gateway}/console/threads/{escalation.thread_id}")
    assert response.status == 404
    expect(other.get_by_role("heading", name="Not found")).to_be_visible()
    expect(other.locator("body")).not_to_contain_text(URGENT)
    snapshot(other, "05-other-clinic-404")


def polls(page: Page, count: int) -> None:
    """Wait until the thread page's poller has fetched `count` updates."""
    for _ in range(count):
        with page.expect_response(lambda response: "/updates" in response.url,
                                  timeout=WAIT_MS):
            pass


def test_polling_never_replaces_an_unchanged_panel_so_a_click_is_not_lost(stack, db, browser):
    escalation = urgent_escalation(stack, db, new_patient())
    page = sign_in(browser, stack.gateway, "riverside-admin", "riverside-demo")
    page.goto(f"{stack.gateway}/console/threads/{escalation.thread_id}")
    acknowledge = page.get_by_role("button", name="Acknowledge")
    button = acknowledge.element_handle()

    polls(page, 3)

    # The very button the page first drew is still the one on screen: nothing was swapped.
    assert button.evaluate("node => node.isConnected")
    button.click()
    expect(page.locator(f"#escalation-{escalation.id} .status")).to_have_text("acknowledged")
    db.expire_all()
    assert db.get(type(escalation), escalation.id).status == EscalationStatus.acknowledged


def page_width(page: Page) -> int:
    return page.evaluate("document.documentElement.scrollWidth")


def test_dashboard_draws_the_databases_numbers(stack, db, seeded, browser):
    page = sign_in(browser, stack.gateway, "riverside-admin", "riverside-demo")
    page.get_by_role("link", name="Dashboard").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    page.goto(f"{stack.gateway}/console/dashboard?{seeded.query}")
    expected = seeded.counts(db)

    for key in ("missed", "texted", "booked"):
        shown = page.locator(f'[data-figure="{key}"] .value').inner_text()
        assert int(shown.replace(",", "")) == expected[key], key
    funnel = page.locator("#chart-funnel svg rect")
    assert funnel.count() > 0
    heights = funnel.evaluate_all("rects => rects.map(r => r.getBBox().height)")
    assert sum(heights) > 0
    assert page.locator("#chart-heat svg rect.heat").count() == 7 * 24
    assert page.locator("#chart-trend svg polyline").first.get_attribute("points")
    page.locator("#chart-funnel summary").click()
    daily = page.locator("#chart-funnel table tbody tr")
    assert daily.count() == 30
    missed_by_day = daily.evaluate_all(
        "rows => rows.map(r => Number(r.querySelectorAll('td')[0].textContent))")
    assert sum(missed_by_day) == expected["missed"]
    snapshot(page, "06-dashboard")


def test_phone_pages_fit_the_screen_and_acknowledge_comes_first(stack, db, seeded, browser):
    escalation = urgent_escalation(stack, db, new_patient())
    page = sign_in(browser, stack.gateway, "riverside-admin", "riverside-demo", viewport=PHONE)

    expect(page.locator("#queue-rows tr").first).to_be_visible()
    assert page_width(page) == PHONE["width"]
    snapshot(page, "07-phone-queue")

    # The alert's link, as the on-call clinician's phone opens it.
    page.goto(f"{stack.gateway}/console/threads/{escalation.thread_id}")
    acknowledge = page.locator(f"#escalation-{escalation.id}").get_by_role(
        "button", name="Acknowledge")
    expect(acknowledge).to_be_visible()
    assert page_width(page) == PHONE["width"]
    box = acknowledge.bounding_box()
    assert box["y"] + box["height"] <= PHONE["height"]
    assert page.locator('a[href^="tel:+44"]').first.bounding_box()["y"] < PHONE["height"]
    snapshot(page, "08-phone-thread")

    page.goto(f"{stack.gateway}/console/dashboard?{seeded.query}")
    expect(page.locator('[data-figure="missed"]')).to_be_visible()
    assert page_width(page) == PHONE["width"]
    snapshot(page, "09-phone-dashboard")


def test_an_invited_person_of_two_clinics_switches_clinic_in_the_header(stack, browser):
    username = f"locum-{uuid.uuid4().hex[:8]}"
    riverside = sign_in(browser, stack.gateway, "riverside-admin", "riverside-demo")
    riverside.goto(f"{stack.gateway}/console/people")
    riverside.get_by_label("Name", exact=True).fill("Locum Lee")
    riverside.get_by_label("Username", exact=True).fill(username)
    riverside.get_by_role("button", name="Invite").click()
    link = riverside.locator(".one-time-link").input_value()
    snapshot(riverside, "10-people-invite-link")

    northside = sign_in(browser, stack.gateway, "northside-admin", "northside-demo")
    northside.goto(f"{stack.gateway}/console/people")
    northside.get_by_label("Name", exact=True).fill("Locum Lee")
    northside.get_by_label("Username", exact=True).fill(username)
    northside.get_by_role("button", name="Invite").click()
    expect(northside.get_by_role("status")).to_contain_text("already has a log-in")

    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.goto(link)
    page.get_by_label("New password").fill("locum-password-long")
    page.get_by_label("Again").fill("locum-password-long")
    page.get_by_role("button", name="Set password").click()
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("locum-password-long")
    page.get_by_role("button", name="Sign in").click()
    clinic = page.get_by_label("Clinic", exact=True)
    expect(clinic.locator("option:checked")).to_have_text("Northside Physio")
    expect(page.get_by_role("link", name="Audit trail")).to_have_count(0)  # staff, not admin
    clinic.select_option(label="Riverside Dental & Aesthetics")
    page.get_by_role("button", name="Switch").click()
    expect(page.get_by_role("status")).to_contain_text(
        "You are working at Riverside Dental & Aesthetics")
    expect(page.get_by_label("Clinic", exact=True).locator("option:checked")).to_have_text(
        "Riverside Dental & Aesthetics")
    snapshot(page, "11-clinic-switched")
