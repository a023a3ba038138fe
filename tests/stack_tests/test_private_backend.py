"""Rasa and the action server are private: loopback by default, every call authenticated, and
the generated endpoints.yml (which holds their secrets) readable by our user only."""

from __future__ import annotations

import ipaddress
import itertools
import stat
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from rasa.core.lock_store import LockStore
from rasa.core.tracker_store import SQLTrackerStore
from rasa.utils.endpoints import read_endpoint_config
from redis.connection import SSLConnection
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from booking.models import Consent, Contact
from booking.settings import Settings
from stack.supervisor import rasa_endpoints, services, with_backend_tokens

CLINIC_NUMBER = "+441632960001"
_numbers = itertools.count(700)


def backend_settings(**overrides) -> Settings:
    return Settings(**{"rasa_token": "rasa-secret", "action_server_token": "actions-secret",
                       **overrides})


def test_the_action_endpoint_sends_the_action_server_token(tmp_path):
    path = rasa_endpoints(backend_settings(), tmp_path)
    action_endpoint = read_endpoint_config(str(path), "action_endpoint")
    assert action_endpoint.headers == {"Authorization": "Bearer actions-secret"}


def test_the_tracker_store_keeps_the_database_password_and_tls(tmp_path):
    settings = backend_settings(
        database_url="postgresql+psycopg2://ringback:s3cr%40t@db.internal:5433/ringback"
                     "?sslmode=verify-full")
    tracker_store = read_endpoint_config(str(rasa_endpoints(settings, tmp_path)),
                                         "tracker_store")
    # The URL Rasa's SQL tracker store connects to, built as Rasa builds it.
    url = SQLTrackerStore.get_db_url(host=tracker_store.url, **tracker_store.kwargs)
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "ringback", "s3cr@t", "db.internal", 5433, "ringback")
    assert dict(url.query) == {"sslmode": "verify-full"}


def test_the_lock_store_keeps_the_redis_password_and_tls(tmp_path):
    settings = backend_settings(redis_url="rediss://:p%40ss@redis.internal:6380/2")
    lock_store = LockStore.create(
        read_endpoint_config(str(rasa_endpoints(settings, tmp_path)), "lock_store"))
    pool = lock_store.red.connection_pool
    assert pool.connection_class is SSLConnection
    assert {key: pool.connection_kwargs[key] for key in ("host", "port", "db", "password")} == {
        "host": "redis.internal", "port": 6380, "db": 2, "password": "p@ss"}


def test_a_plain_redis_url_stays_plain(tmp_path):
    settings = backend_settings(redis_url="redis://127.0.0.1:6379/0")
    lock_store = LockStore.create(
        read_endpoint_config(str(rasa_endpoints(settings, tmp_path)), "lock_store"))
    pool = lock_store.red.connection_pool
    assert pool.connection_class is not SSLConnection
    assert pool.connection_kwargs["password"] is None


def test_endpoints_yml_is_readable_by_its_owner_only_even_over_an_older_file(tmp_path):
    older = tmp_path / "endpoints.yml"
    older.write_text("left by an earlier run")
    older.chmod(0o644)
    path = rasa_endpoints(backend_settings(), tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "actions-secret" in path.read_text()


def test_each_run_without_configured_tokens_gets_its_own_fresh_pair():
    # Empty, so a token in the shell running the tests does not count as configured.
    environment = {"ENVIRONMENT": "development", "RASA_TOKEN": "", "ACTION_SERVER_TOKEN": ""}
    first_settings, first_env = with_backend_tokens(environment)
    _, second_env = with_backend_tokens(environment)
    first = (first_env["RASA_TOKEN"], first_env["ACTION_SERVER_TOKEN"])
    second = (second_env["RASA_TOKEN"], second_env["ACTION_SERVER_TOKEN"])
    assert len(set(first + second)) == 4
    assert all(len(token) >= 32 for token in first)
    assert (first_settings.rasa_token, first_settings.action_server_token) == first


def test_configured_tokens_are_passed_on_unchanged():
    settings, env = with_backend_tokens({"RASA_TOKEN": "configured-rasa",
                                         "ACTION_SERVER_TOKEN": "configured-actions"})
    assert (env["RASA_TOKEN"], env["ACTION_SERVER_TOKEN"]) == (
        "configured-rasa", "configured-actions")
    assert (settings.rasa_token, settings.action_server_token) == (
        "configured-rasa", "configured-actions")


def test_rasa_binds_to_its_host_and_demands_its_token(tmp_path):
    settings = backend_settings(rasa_host="10.0.0.5", action_server_host="10.0.0.6")
    children = {service.name: service for service in services(
        settings, model=tmp_path / "model.tar.gz", run_dir=tmp_path, with_simulator=False)}
    rasa = children["rasa"].command
    assert rasa[rasa.index("--interface") + 1] == "10.0.0.5"
    assert "--auth-token=rasa-secret" in rasa
    assert "--enable-api" in rasa
    assert children["action server"].command[1:] == ["-m", "stack.action_server"]
    assert children["action server"].health_url.startswith("http://10.0.0.6:")


def test_a_token_starting_with_a_dash_reaches_rasa_whole(tmp_path):
    # One generated token in 64 starts with "-"; Rasa once refused to start on such a run.
    from rasa.__main__ import create_argument_parser

    settings = backend_settings(rasa_token="-Zk3_secret")
    rasa = {service.name: service for service in services(
        settings, model=tmp_path / "model.tar.gz", run_dir=tmp_path,
        with_simulator=False)}["rasa"].command
    assert create_argument_parser().parse_args(rasa[1:]).auth_token == "-Zk3_secret"


def test_no_child_starts_without_the_backend_tokens(tmp_path):
    with pytest.raises(ValueError, match="RASA_TOKEN and ACTION_SERVER_TOKEN"):
        services(Settings(rasa_token=None, action_server_token=None),
                 model=tmp_path / "model.tar.gz", run_dir=tmp_path, with_simulator=False)


# The real stack from here on.

def listening_addresses(port: int) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The local addresses with a socket listening on `port`, from the kernel's tables."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                # The kernel prints each 32-bit word of the address in host (little-endian) order.
                raw = b"".join(bytes.fromhex(address[i:i + 8])[::-1]
                               for i in range(0, len(address), 8))
                found.add(ipaddress.ip_address(raw))
    return found


def conversation(stack, sender_id: str) -> str:
    return f"{stack.settings.rasa_url}/conversations/{quote(sender_id, safe=':+')}"


def forged_opt_out(sender_id: str) -> dict:
    """What Rasa would send the action server after "stop texting me"."""
    return {
        "next_action": "action_opt_out", "sender_id": sender_id, "version": "3.6.21",
        "domain": {},
        "tracker": {
            "sender_id": sender_id, "slots": {}, "events": [], "paused": False,
            "latest_action_name": "action_listen",
            "latest_message": {"text": "stop texting me",
                               "intent": {"name": "opt_out", "confidence": 0.99},
                               "entities": []},
        },
    }


def consent_of(stack, phone: str) -> Consent:
    engine = create_engine(stack.database_url, future=True)
    try:
        with Session(engine) as session:
            return session.execute(select(Contact.consent).where(Contact.phone == phone)
                                   ).scalar_one()
    finally:
        engine.dispose()


@pytest.mark.integration
def test_rasa_and_the_action_server_listen_on_loopback_only(stack):
    for port in (stack.settings.rasa_port, stack.settings.action_server_port):
        addresses = listening_addresses(port)
        assert addresses and all(address.is_loopback for address in addresses), (port, addresses)


@pytest.mark.integration
@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_rasa_refuses_api_calls_without_its_token(stack, token):
    params = {"token": token} if token else {}
    sender = conversation(stack, "riverside:+447700900699")
    calls = [
        ("GET", f"{sender}/tracker", None),
        ("POST", f"{sender}/trigger_intent", {"name": "EXTERNAL_missed_call", "entities": {}}),
        ("POST", f"{sender}/tracker/events", {"event": "pause"}),
        ("PUT", f"{stack.settings.rasa_url}/model", {"model_file": "/tmp/other.tar.gz"}),
    ]
    for method, url, body in calls:
        response = httpx.request(method, url, params=params, json=body, timeout=30)
        assert response.status_code in (401, 403), (method, url, response.status_code)


@pytest.mark.integration
def test_rasa_answers_api_calls_with_its_token(stack):
    sender = conversation(stack, "riverside:+447700900698")
    token = {"token": stack.env["RASA_TOKEN"]}
    appended = httpx.post(f"{sender}/tracker/events", params=token,
                          json={"event": "slot", "name": "awaiting", "value": None}, timeout=30)
    assert appended.status_code == 200, appended.text
    tracker = httpx.get(f"{sender}/tracker", params=token, timeout=30)
    assert tracker.status_code == 200, tracker.text
    assert tracker.json()["sender_id"] == "riverside:+447700900698"


@pytest.mark.integration
def test_the_action_server_runs_no_action_without_its_token(stack):
    patient = f"+447700900{next(_numbers):03d}"
    stack.phone.ring(caller=patient, clinic_number=CLINIC_NUMBER)
    stack.phone.wait_for(patient, count=1)  # the text-back: the patient has a thread now
    webhook = stack.settings.action_server_url
    forged = forged_opt_out(f"riverside:{patient}")

    for headers in ({}, {"Authorization": "Bearer wrong-token"},
                    {"Authorization": f"Bearer {stack.env['RASA_TOKEN']}"}):
        refused = httpx.post(webhook, json=forged, headers=headers, timeout=30)
        assert refused.status_code == 401, (headers, refused.text)
    assert httpx.get(webhook.replace("/webhook", "/actions"), timeout=30).status_code == 401
    assert consent_of(stack, patient) != Consent.opted_out

    # The same request with the token is obeyed: the token was all that stood in the way.
    accepted = httpx.post(webhook, json=forged, timeout=30,
                          headers={"Authorization": f"Bearer {stack.env['ACTION_SERVER_TOKEN']}"})
    assert accepted.status_code == 200, accepted.text
    assert consent_of(stack, patient) == Consent.opted_out
