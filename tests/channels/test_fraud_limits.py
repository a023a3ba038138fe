"""Fraud limits on the missed-call path (issue 15, point 7), through the real gateway app and
database, SQLite and PostgreSQL: each clinic's own secret for the JSON hook; text-backs only to
the countries a clinic allows and never to costly numbers, by Twilio Voice and by the hook; and
hourly caps, per clinic and for all clinics, that hold when two gateways take a burst at once
and alert staff once. Refused calls are stored, with why, and nothing is sent to them."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from booking.calls.hourly_caps import HourlyCaps, clinic_scope
from booking.calls.recovery import CallReport, decide_text_backs, register_missed_calls
from booking.clinics.config import load_clinics_file
from booking.db import get_engine, session_factory
from booking.gateway.app import create_app
from booking.gateway.missed_call_hook import signature_for
from booking.migrate import upgrade
from booking.models import (
    Clinic,
    Direction,
    FunnelEvent,
    Message,
    MissedCall,
    MissedCallStatus,
    TextBackHour,
    WebhookReplay,
    utcnow,
)
from booking.reports import exports, metrics
from booking.reports.periods import Period
from booking.settings import PROJECT_ROOT, Settings
from tests.booking.test_concurrency import postgres_url  # noqa: F401 - a fixture
from tests.channels.conftest import RunningFake, twilio_post, wait_until, write_clinics
from tests.stack import ACCOUNT_SID, AUTH_TOKEN, HMAC_SECRET, free_port, served_in_thread

pytestmark = pytest.mark.integration

# Production wants 32 characters or more.
SECRETS = {"capped": "capped-clinic-hook-secret-0123456789",
           "spare": "spare-clinic-hook-secret-0123456789"}
CAP = 5
BURST = 12
GLOBAL_CAP = 8
CLINIC_FIELD_KEY = "k1:" + "K" * 43 + "="  # production refuses the development key
LESOTHO_MOBILE = "+26658001234"  # the issue's example: a signed call from Lesotho
UK_PREMIUM = "+449012345678"  # 0901: premium rate, in the clinic's own country
IRISH_MOBILE = "+353851234567"

_ALL_DAY = {day: ["00:00-24:00"] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


def _clinic(slug: str, n: int, **settings) -> dict:
    return {
        "slug": slug, "name": f"{slug.title()} Dental", "timezone": "Europe/London",
        "country": "GB",
        "numbers": {"voice": f"+4416329604{n}1", "sms": f"+4416329604{n}1",
                    "front_desk": f"+4416329604{n}9"},
        "opening_hours": _ALL_DAY,
        "services": [{"slug": "check-up", "name": "Check-up", "duration_minutes": 30,
                      "providers": ["dr-a"]}],
        "providers": [{"slug": "dr-a", "name": "Dr A"}],
        "staff": [{"slug": "manager", "name": "Manager", "phone": f"+4477009004{n}9",
                   "billing": True}],
        "settings": {"text_back": settings} if settings else {},
    }


CLINICS = [
    _clinic("capped", 1, hourly_cap=CAP),  # its own cap, below the deployment's
    _clinic("spare", 2),
    _clinic("shared", 3),  # no secret of its own: the shared one still reports its calls
    _clinic("border", 4, allowed_countries=["GB", "IE"]),
]
BY_SLUG = {clinic["slug"]: clinic for clinic in CLINICS}


def number(slug: str) -> str:
    return BY_SLUG[slug]["numbers"]["voice"]


def staff_phone(slug: str) -> str:
    return BY_SLUG[slug]["staff"][0]["phone"]


@dataclass
class Gateways:
    urls: list[str]
    database_url: str
    fake: RunningFake

    def session(self) -> Session:
        return Session(get_engine(self.database_url))


@pytest.fixture(params=["sqlite", "postgres"])
def gateways(request: pytest.FixtureRequest, tmp_path, fake_twilio: RunningFake
             ) -> Iterator[Gateways]:
    """Two gateway apps on one database of each kind, as two gateway processes behind a load
    balancer: each batches and decides on its own. Twilio is the local fake; Rasa is absent
    (the gateway survives that)."""
    database_url = (f"sqlite:///{tmp_path / 'gateway.db'}" if request.param == "sqlite"
                    else request.getfixturevalue("postgres_url"))
    upgrade(database_url)
    load_clinics_file(database_url=database_url,
                      path=write_clinics(tmp_path / "clinics.yml", CLINICS))
    urls = []
    with contextlib.ExitStack() as serving:
        for port in (free_port(), free_port()):
            url = f"http://127.0.0.1:{port}"
            settings = Settings(
                database_url=database_url, gateway_public_url=url, console_public_url=url,
                twilio_account_sid=ACCOUNT_SID, twilio_auth_token=AUTH_TOKEN,
                twilio_api_base_url=fake_twilio.url, rasa_url="http://127.0.0.1:9",
                missed_call_hmac_secret=HMAC_SECRET, missed_call_hook_secrets=SECRETS,
                session_secret="test-session-secret", outbox_sweep_interval_seconds=0.2,
                text_back_global_hourly_cap=GLOBAL_CAP)
            serving.enter_context(served_in_thread(create_app(settings), port,
                                                   name="the gateway"))
            urls.append(url)
        yield Gateways(urls=urls, database_url=database_url, fake=fake_twilio)
    get_engine(database_url).dispose()  # before PostgreSQL drops the database


def hook(gateway: str, payload: dict, *, secret: str) -> httpx.Response:
    body = json.dumps(payload).encode()
    stamp = str(int(time.time()))
    return httpx.post(f"{gateway}/hooks/missed-call", content=body, timeout=30, headers={
        "Content-Type": "application/json", "X-Ringback-Timestamp": stamp,
        "X-Ringback-Signature": signature_for(secret=secret, timestamp=stamp, body=body)})


def dial_missed(gateway: str, *, caller: str, to: str, call_sid: str) -> httpx.Response:
    """The Dial's action callback: the front desk did not answer."""
    return twilio_post(f"{gateway}/twilio/voice/dial-status", {
        "CallSid": call_sid, "From": caller, "To": to, "CallStatus": "in-progress",
        "DialCallStatus": "no-answer", "AccountSid": ACCOUNT_SID})


def decided(gateways: Gateways, **where) -> list[MissedCall]:
    """The clinic's missed calls, once none is waiting for its text-back to be decided."""
    def calls() -> list[MissedCall]:
        with gateways.session() as session:
            return list(session.execute(
                select(MissedCall).join(Clinic).filter_by(**where).order_by(MissedCall.id)
            ).scalars())

    wait_until(lambda: calls() and all(c.status != MissedCallStatus.pending for c in calls()),
               message=f"calls {where} decided")
    return calls()


def outbound_to(gateways: Gateways, phone: str) -> list[Message]:
    with gateways.session() as session:
        return list(session.execute(select(Message).where(
            Message.direction == Direction.outbound, Message.to_number == phone)).scalars())


def refused_events(gateways: Gateways, slug: str) -> list[dict]:
    with gateways.session() as session:
        return [detail for (detail,) in session.execute(
            select(FunnelEvent.detail).join(Clinic, Clinic.id == FunnelEvent.clinic_id)
            .where(Clinic.slug == slug, FunnelEvent.kind == "text_back_refused")
            .order_by(FunnelEvent.id))]


def clinic_id(gateways: Gateways, slug: str) -> int:
    with gateways.session() as session:
        return session.execute(select(Clinic.id).where(Clinic.slug == slug)).scalar_one()


def row_counts(gateways: Gateways) -> tuple[int, int, int]:
    with gateways.session() as session:
        return tuple(len(session.execute(select(model)).all())
                     for model in (MissedCall, Message, WebhookReplay))


# -- per-clinic secrets for the JSON hook ------------------------------------------------------


def test_a_clinics_hook_secret_reports_only_that_clinics_calls(gateways):
    gateway = gateways.urls[0]
    before = row_counts(gateways)
    call = {"call_id": "pbx-1", "caller": "+447700900101"}
    # Capped's secret, naming another clinic by slug or by the number called: refused.
    assert hook(gateway, {**call, "clinic": "spare"},
                secret=SECRETS["capped"]).status_code == 401
    assert hook(gateway, {**call, "to": number("spare")},
                secret=SECRETS["capped"]).status_code == 401
    # The shared secret of earlier versions no longer works for a clinic with its own.
    assert hook(gateway, {**call, "clinic": "capped"}, secret=HMAC_SECRET).status_code == 401
    assert row_counts(gateways) == before  # nothing stored, not even the signature

    own = hook(gateway, {**call, "clinic": "capped"}, secret=SECRETS["capped"])
    assert own.status_code == 202, own.text
    # A clinic without a secret of its own still takes the shared one (the migration path).
    shared = hook(gateway, {**call, "call_id": "pbx-2", "clinic": "shared"}, secret=HMAC_SECRET)
    assert shared.status_code == 202, shared.text
    assert [c.status for c in decided(gateways, slug="capped")] == [MissedCallStatus.texted]
    assert [c.status for c in decided(gateways, slug="shared")] == [MissedCallStatus.texted]


def test_without_any_secret_for_it_production_takes_no_hook_calls_for_a_clinic():
    settings = Settings(environment="production", missed_call_hook_secrets=SECRETS,
                        twilio_auth_token="t" * 32, session_secret="s" * 32,
                        rasa_token="r" * 32, action_server_token="a" * 32,
                        field_encryption_keys=CLINIC_FIELD_KEY,
                        database_url="postgresql+psycopg2://ringback@127.0.0.1/ringback")
    assert settings.hook_secret_for("capped") == SECRETS["capped"]
    assert settings.hook_secret_for("shared") is None  # the gateway answers 401
    with pytest.raises(ValueError, match="MISSED_CALL_HMAC_SECRET"):
        Settings(**{**settings.dict(), "missed_call_hmac_secret": "dev-only-change-me"})


def test_a_production_gateway_refuses_hook_calls_for_a_clinic_without_a_secret(
        postgres_url, tmp_path):  # noqa: F811
    upgrade(postgres_url)
    load_clinics_file(database_url=postgres_url,
                      path=write_clinics(tmp_path / "clinics.yml", CLINICS))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = Settings(
        environment="production", database_url=postgres_url, gateway_public_url=url,
        console_public_url=url, twilio_account_sid=ACCOUNT_SID, twilio_auth_token=AUTH_TOKEN,
        twilio_api_base_url="http://127.0.0.1:9", rasa_url="http://127.0.0.1:9",
        rasa_token="r" * 32, action_server_token="a" * 32, session_secret="s" * 32,
        field_encryption_keys=CLINIC_FIELD_KEY,
        missed_call_hook_secrets=SECRETS)  # and no shared secret
    try:
        with served_in_thread(create_app(settings), port, name="the gateway"):
            call = {"call_id": "pbx-prod", "caller": "+447700900103"}
            with Session(get_engine(postgres_url)) as session:
                before = session.execute(select(MissedCall)).all()
            # Answered as a wrong signature: a stranger learns nothing of which clinics exist.
            assert hook(url, {**call, "clinic": "shared"}, secret=HMAC_SECRET).status_code == 401
            assert hook(url, {**call, "clinic": "shared"},
                        secret="dev-only-change-me").status_code == 401
            assert hook(url, {**call, "clinic": "no-such-clinic"},
                        secret=SECRETS["capped"]).status_code == 401
            with Session(get_engine(postgres_url)) as session:
                assert session.execute(select(MissedCall)).all() == before == []
            assert hook(url, {**call, "clinic": "capped"},
                        secret=SECRETS["capped"]).status_code == 202
    finally:
        get_engine(postgres_url).dispose()


# -- destinations --------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["voice", "hook"])
def test_no_text_back_to_a_country_the_clinic_does_not_allow_or_a_costly_number(gateways,
                                                                                 path):
    gateway = gateways.urls[0]
    callers = {LESOTHO_MOBILE: "country_not_allowed:LS", UK_PREMIUM: "costly_number:premium_rate",
               "+447700900102": None}  # a UK mobile is texted as ever
    for n, caller in enumerate(callers):
        if path == "voice":
            response = dial_missed(gateway, caller=caller, to=number("spare"),
                                   call_sid=f"CAdest{n}")
            assert response.status_code == 200, response.text
            # The caller is promised a text only when one may go.
            assert ("sending you a text" in response.text) == (callers[caller] is None)
        else:
            response = hook(gateway, {"call_id": f"dest-{n}", "caller": caller,
                                      "clinic": "spare"}, secret=SECRETS["spare"])
            assert response.status_code == 202, response.text
    calls = decided(gateways, slug="spare")
    assert [(c.status, c.refused_reason) for c in calls] == [
        (MissedCallStatus.refused, "country_not_allowed:LS"),
        (MissedCallStatus.refused, "costly_number:premium_rate"),
        (MissedCallStatus.texted, None)]
    assert refused_events(gateways, "spare") == [
        {"reason": "country_not_allowed", "detail": "LS"},
        {"reason": "costly_number", "detail": "premium_rate"}]
    gateways.fake.phone.wait_for("+447700900102", count=1)
    for refused in (LESOTHO_MOBILE, UK_PREMIUM):
        assert outbound_to(gateways, refused) == []
        assert gateways.fake.outbound(refused) == []
    # The clinic's dashboard counts them, and its export of missed calls says why.
    period = Period(since=calls[0].occurred_at - timedelta(minutes=1),
                    until=utcnow() + timedelta(minutes=1), zone="Europe/London")
    with gateways.session() as session:
        figures = metrics.clinic_figures(session, clinic_id=clinic_id(gateways, "spare"),
                                         period=period)
        rows = exports.missed_call_rows(session, clinic_id=clinic_id(gateways, "spare"),
                                        period=period)
    assert (figures.count("text_back_refused"), figures.count("texted")) == (2, 1)
    assert [row["outcome"] for row in rows] == [
        "not texted: a country the clinic does not text (LS)",
        "not texted: a costly number (premium rate)", "texted, no reply"]


def test_a_clinic_texts_back_the_countries_it_lists(gateways):
    gateway = gateways.urls[0]
    for n, caller in enumerate([IRISH_MOBILE, LESOTHO_MOBILE]):
        assert dial_missed(gateway, caller=caller, to=number("border"),
                           call_sid=f"CAborder{n}").status_code == 200
    calls = decided(gateways, slug="border")
    assert [(c.status, c.refused_reason) for c in calls] == [
        (MissedCallStatus.texted, None), (MissedCallStatus.refused, "country_not_allowed:LS")]
    gateways.fake.phone.wait_for(IRISH_MOBILE, count=1)


# -- hourly caps ---------------------------------------------------------------------------


def burst(calls: list[Callable[[], httpx.Response]]) -> None:
    """All at once, from as many threads, alternating between the two gateways."""
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        responses = list(pool.map(lambda call: call(), calls))
    assert all(response.status_code in (200, 202) for response in responses), [
        response.text for response in responses if response.status_code not in (200, 202)]


def hours(gateways: Gateways, scope: str) -> list[TextBackHour]:
    with gateways.session() as session:
        return list(session.execute(select(TextBackHour).where(TextBackHour.scope == scope)
                                    .order_by(TextBackHour.hour_start)).scalars())


def assert_capped_per_hour(rows: list[TextBackHour], *, cap: int, calls: int) -> None:
    """Each clock hour texts at most the cap, and refuses only once it is reached. A burst
    nearly always falls in one hour; across two, each hour holds to the cap on its own."""
    assert sum(row.texted + row.refused for row in rows) == calls
    for row in rows:
        assert row.texted <= cap
        assert row.refused == 0 or row.texted == cap
        assert row.alerted == (row.refused > 0)


def test_a_burst_over_the_clinics_cap_texts_the_cap_records_the_rest_and_alerts_once(gateways):
    callers = [f"+4477009005{n:02d}" for n in range(BURST)]
    burst([(lambda caller=caller, n=n: dial_missed(
                gateways.urls[n % 2], caller=caller, to=number("capped"),
                call_sid=f"CAburst{n}"))
           for n, caller in enumerate(callers)])
    calls = decided(gateways, slug="capped")
    texted = [c for c in calls if c.status == MissedCallStatus.texted]
    refused = [c for c in calls if c.status == MissedCallStatus.refused]
    rows = hours(gateways, clinic_scope(calls[0].clinic_id))
    assert_capped_per_hour(rows, cap=CAP, calls=BURST)
    assert len(texted) == sum(row.texted for row in rows)
    assert len(refused) == BURST - len(texted) > 0  # stored, none lost
    assert {c.refused_reason for c in refused} == {"clinic_hourly_cap"}
    assert len(refused_events(gateways, "capped")) == len(refused)
    # Exactly the allowed text-backs reach Twilio, each once; the refused callers get nothing.
    for call in texted:
        with gateways.session() as session:
            phone = session.get(MissedCall, call.id).contact.phone
        assert len(gateways.fake.phone.wait_for(phone, count=1)) == 1
    with gateways.session() as session:
        refused_phones = [session.get(MissedCall, c.id).contact.phone for c in refused]
    assert all(outbound_to(gateways, phone) == [] for phone in refused_phones)
    # The manager hears once per hour the cap was reached, not once per refused call.
    alerts = gateways.fake.phone.wait_for(staff_phone("capped"),
                                          count=sum(row.alerted for row in rows))
    assert len(outbound_to(gateways, staff_phone("capped"))) == len(alerts) == len(rows)
    assert "cap of 5 text-backs an hour is reached" in alerts[0]["body"]
    assert "+44770090050" not in alerts[0]["body"]  # no caller named

    # One more call this hour is refused and stored, with no second alert.
    assert dial_missed(gateways.urls[0], caller="+447700900599", to=number("capped"),
                       call_sid="CAafter").status_code == 200
    last = decided(gateways, slug="capped")[-1]
    rows = hours(gateways, clinic_scope(last.clinic_id))
    if rows[-1].texted == CAP:  # still the burst's hour (not a fresh one that just began)
        assert (last.status, last.refused_reason) == (MissedCallStatus.refused,
                                                      "clinic_hourly_cap")
    assert len(outbound_to(gateways, staff_phone("capped"))) == sum(r.alerted for r in rows)


def test_the_cap_for_all_clinics_holds_across_clinics_and_alerts_each_clinic_once(gateways):
    slugs = ["spare", "shared", "border"]
    callers = [f"+4477009006{n:02d}" for n in range(BURST)]
    burst([(lambda caller=caller, n=n: dial_missed(
                gateways.urls[n % 2], caller=caller, to=number(slugs[n % 3]),
                call_sid=f"CAglobal{n}"))
           for n, caller in enumerate(callers)])
    calls = [c for slug in slugs for c in decided(gateways, slug=slug)]
    rows = hours(gateways, "all")
    assert_capped_per_hour(rows, cap=GLOBAL_CAP, calls=BURST)
    texted = [c for c in calls if c.status == MissedCallStatus.texted]
    refused = [c for c in calls if c.status == MissedCallStatus.refused]
    assert len(texted) == sum(row.texted for row in rows)
    assert len(refused) == BURST - len(texted) > 0
    assert {c.refused_reason for c in refused} == {"global_hourly_cap"}
    # Each clinic the global cap refused hears of it once that hour.
    for slug in slugs:
        clinic_rows = hours(gateways, clinic_scope(clinic_id(gateways, slug)))
        alerted = sum(row.alerted for row in clinic_rows)
        assert alerted == sum(row.refused > 0 for row in clinic_rows)
        if alerted:
            gateways.fake.phone.wait_for(staff_phone(slug), count=alerted)
        assert len(outbound_to(gateways, staff_phone(slug))) == alerted
    assert sum(sum(row.alerted for row in hours(gateways, clinic_scope(clinic_id(gateways, s))))
               for s in slugs) > 0


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    database_url = (f"sqlite:///{tmp_path / 'race.db'}" if request.param == "sqlite"
                    else request.getfixturevalue("postgres_url"))
    upgrade(database_url)
    load_clinics_file(database_url=database_url,
                      path=write_clinics(tmp_path / "clinics.yml", CLINICS))
    yield database_url
    get_engine(database_url).dispose()


def test_deciders_racing_in_parallel_transactions_text_no_more_than_the_cap(database):
    """Eight deciders at once, as eight gateway processes' batches: the counts are taken under
    a lock (PostgreSQL) or the single writer (SQLite), so the cap holds exactly."""
    sessions = session_factory(get_engine(database))
    with sessions() as session, session.begin():
        clinic = session.execute(select(Clinic).where(Clinic.slug == "spare")).scalar_one()
        recorded = register_missed_calls(session, [
            CallReport(clinic_id=clinic.id, caller=f"+4477009007{n:02d}",
                       call_sid=f"CArace{n}", dial_status="no-answer", source="twilio",
                       occurred_at=utcnow()) for n in range(16)])
    ids = [r.missed_call_id for r in recorded]
    barrier = threading.Barrier(8)
    caps = HourlyCaps(clinic=CAP, all_clinics=1000)

    def decide(batch: list[int]) -> list:
        barrier.wait()
        with sessions() as session, session.begin():
            return decide_text_backs(session, batch, caps=caps)

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = [o for batch in pool.map(decide, [ids[n::8] for n in range(8)])
                    for o in batch]
    assert sorted(o.missed_call_id for o in outcomes) == sorted(ids)
    with sessions() as session:
        rows = list(session.execute(select(TextBackHour).where(
            TextBackHour.scope == clinic_scope(clinic.id))).scalars())
        statuses = Counter(session.execute(
            select(MissedCall.status).where(MissedCall.id.in_(ids))).scalars())
        messages = session.execute(select(Message.id).where(
            Message.direction == Direction.outbound, Message.clinic_id == clinic.id)).all()
    assert_capped_per_hour(rows, cap=CAP, calls=len(ids))
    assert statuses[MissedCallStatus.texted] == len(messages) == sum(r.texted for r in rows)
    assert statuses[MissedCallStatus.refused] == len(ids) - len(messages) > 0
    # One refused call per hour carries the alert, for the gateway to send.
    assert sum(o.cap_reached is not None for o in outcomes) == sum(r.alerted for r in rows)


def test_loading_clinics_warns_of_a_hook_secret_for_no_clinic(tmp_path):
    """A misspelt slug would leave its clinic on the shared secret: `ringback load-clinics`
    says so."""
    env = {**os.environ, "ENVIRONMENT": "development",
           "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
           "MISSED_CALL_HOOK_SECRETS": json.dumps({"capped": "a", "caped": "b"})}
    clinics = write_clinics(tmp_path / "clinics.yml", CLINICS)
    ringback = str(Path(sys.executable).parent / "ringback")
    subprocess.run([ringback, "migrate"], env=env, check=True, capture_output=True,
                   cwd=PROJECT_ROOT, timeout=120)
    result = subprocess.run([ringback, "load-clinics", "--file", str(clinics)], env=env,
                            capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "MISSED_CALL_HOOK_SECRETS names no clinic: caped" in result.stderr
