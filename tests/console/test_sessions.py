"""Console sessions kept on the server and sign-in throttling kept in the database, against the
real gateway app in this process on SQLite and PostgreSQL. Time is the app's clock, driven by
the tests: nothing here waits for a timeout to pass."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import httpx
import pytest
import yaml

from booking.clinics.config import load_clinics_file
from booking.console.sessions import COOKIE
from booking.models import ConsoleSession, SignInFailures
from tests.channels.conftest import EXAMPLE_FILE
from tests.console.in_process import (
    OWN_ADDRESS,
    STRANGER_ADDRESS,
    USERNAME,
    csrf_of,
    gateway,
    page,
    poll,
    signed_in,
    try_sign_in,
)

pytestmark = pytest.mark.integration


# -- sessions ------------------------------------------------------------------------------


def test_the_cookie_is_a_random_token_whose_hash_alone_is_stored(console):
    http = signed_in(console)
    token = http.cookies[COOKIE]
    (row,) = [row for row in console.rows(ConsoleSession) if row.staff_id is not None]
    assert len(token) >= 43 and "." not in token  # no signed payload, just the token
    assert token not in (row.token_hash, str(row.data))
    assert set(row.data) == {"staff_id", "account_id", "auth", "csrf"}


def test_a_cookie_used_after_sign_out_is_refused(console):
    http = signed_in(console)
    copied = http.cookies[COOKIE]
    csrf = csrf_of(http.get("/console/escalations").text)
    assert http.post("/console/logout", data={"csrf_token": csrf}).status_code == 303
    assert all(row.staff_id is None for row in console.rows(ConsoleSession))

    with console.client() as replay:
        replay.cookies.set(COOKIE, copied)
        refused = replay.get("/console/escalations")
        assert refused.status_code == 303
        assert refused.headers["location"].startswith("/console/login")
        assert replay.get("/console/escalations/rows").status_code == 401
        assert replay.get("/console/threads/1/updates").status_code == 401


def test_signing_in_issues_a_new_token(console):
    http = console.client()
    http.get("/console/login")
    before = http.cookies[COOKIE]
    assert try_sign_in(http).status_code == 303
    assert http.cookies[COOKIE] != before
    with console.client() as fixated:  # someone who planted the pre-sign-in cookie
        fixated.cookies.set(COOKIE, before)
        assert page(fixated) == 303


def test_an_idle_session_ends_and_polls_do_not_keep_it_alive(console):
    http = signed_in(console)
    for _ in range(14):  # 28 minutes of an open tab polling, nobody touching it
        console.clock.advance(minutes=2)
        assert poll(http) == 200
    console.clock.advance(minutes=2)  # 30 minutes since the last real action
    assert poll(http) == 401
    assert page(http) == 303


def test_real_actions_keep_a_session_until_its_absolute_end(console):
    http = signed_in(console)
    ends = console.clock.now + timedelta(hours=12)
    while console.clock.now + timedelta(minutes=25) < ends:
        console.clock.advance(minutes=25)
        assert page(http) == 200  # each real action restarts the 30 idle minutes
    console.clock.now = ends  # active all day long, still: 12 hours after signing in it ends
    assert page(http) == 303


def test_a_password_change_ends_the_persons_sessions(console, tmp_path):
    http = signed_in(console)
    other = signed_in(console)  # a second browser, same person
    colleague = console.client()
    assert try_sign_in(colleague, "northside-admin", "northside-demo").status_code == 303
    document = yaml.safe_load(EXAMPLE_FILE.read_text())
    for clinic in document["clinics"]:
        for staff in clinic.get("staff", []):
            if staff.get("username") == USERNAME:
                staff["password"] = "a-brand-new-password"
    changed = tmp_path / "clinics.yml"
    changed.write_text(yaml.safe_dump(document))
    load_clinics_file(database_url=console.database_url, path=changed)

    assert page(http) == 303
    assert page(other) == 303
    assert page(colleague) == 200
    assert try_sign_in(console.client(), password="a-brand-new-password").status_code == 303


# -- sign-in throttling --------------------------------------------------------------------


def test_fifteen_parallel_wrong_passwords_are_counted_fifteen_times(console):
    clients = [console.client() for _ in range(15)]
    tokens = [csrf_of(http.get("/console/login").text) for http in clients]
    start = threading.Barrier(15)

    def attempt(index: int) -> httpx.Response:
        start.wait()
        return clients[index].post("/console/login", data={
            "username": USERNAME, "password": f"wrong-{index}", "csrf_token": tokens[index]})

    responses: list[httpx.Response] = [None] * 15  # type: ignore[list-item]

    def run(index: int) -> None:
        responses[index] = attempt(index)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(15)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    # The clock stands still: the first five reach the password check, no more.
    assert Counter(r.status_code for r in responses) == {401: 5, 429: 10}
    refused = [r for r in responses if r.status_code == 429]
    assert all(int(r.headers["retry-after"]) >= 30 for r in refused)
    assert all("Try again in" in r.text for r in refused)
    # Username, address, and the two together: fifteen failures each.
    assert sorted(row.failures for row in console.rows(SignInFailures)) == [15, 15, 15]


def test_the_real_user_signs_in_after_a_strangers_failures(console):
    stranger = console.client(STRANGER_ADDRESS)
    statuses, waits = [], []
    for guess in range(10):
        response = try_sign_in(stranger, password=f"guess-{guess}")
        statuses.append(response.status_code)
        if response.status_code == 429:
            waits.append(int(response.headers["retry-after"]))
    assert statuses == [401] * 5 + [429] * 5
    assert waits == sorted(waits) and waits[0] < waits[-1]  # the delay grows
    # Even the right password from the stranger's address waits now...
    assert try_sign_in(stranger).status_code == 429
    # ...but the real user, from an address that has not failed, is not slowed down at all.
    own = console.client(OWN_ADDRESS)
    assert try_sign_in(own).status_code == 303
    assert page(own) == 200


def test_a_wait_ends_and_the_right_password_then_passes(console):
    http = console.client()
    for guess in range(5):
        assert try_sign_in(http, password=f"typo-{guess}").status_code == 401
    refused = try_sign_in(http)
    assert refused.status_code == 429
    console.clock.advance(seconds=int(refused.headers["retry-after"]))
    assert try_sign_in(http).status_code == 303
    # The right password took its own count back and cleared this address for the user.
    assert page(http) == 200


def test_one_address_guessing_many_usernames_is_slowed_down(console):
    sprayer = console.client(STRANGER_ADDRESS)
    statuses = [try_sign_in(sprayer, f"user-{n}", "password1").status_code for n in range(26)]
    assert statuses == [401] * 25 + [429]
    own = console.client(OWN_ADDRESS)
    assert try_sign_in(own).status_code == 303


def test_failures_at_one_gateway_process_slow_down_sign_ins_at_another(console):
    with gateway(console.database_url, console.clock) as other_url:
        with httpx.Client(base_url=other_url, timeout=60) as other:
            for guess in range(5):
                assert try_sign_in(other, password=f"guess-{guess}").status_code == 401
        here = console.client()
        assert try_sign_in(here, password="guess-5").status_code == 429
        # The sessions are shared too: signed in at one process, signed in at the other.
        assert page(here) == 303
        console.clock.advance(seconds=60)
        assert try_sign_in(here).status_code == 303
        with httpx.Client(base_url=other_url, timeout=60, cookies=here.cookies) as other:
            assert page(other) == 200
