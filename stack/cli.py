"""`ringback` command line: migrate, load-clinics, run, serve, simulator, funnel, seed-history,
demo, purge, patient export/erase, rotate-field-keys, new-field-key."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import socket
import sys
from pathlib import Path

from pydantic import ValidationError

from booking.settings import PROJECT_ROOT, get_settings

MODEL = PROJECT_ROOT / "models" / "ringback.tar.gz"


def migrate(_: argparse.Namespace) -> int:
    from booking.migrate import upgrade

    upgrade(get_settings().database_url)
    print("database is at the newest schema")
    return 0


def load_clinics(args: argparse.Namespace) -> int:
    from booking.clinics.config import ClinicConfigError, load_clinics_file, parse_clinic_file
    from booking.outreach.gate import OutreachRulesError, check_clinic_rules

    path = Path(args.file or get_settings().clinics_file)
    try:
        # The gate's overrides are the gate's to read (clinics/ cannot import it): a typo there
        # must stop the load, not silently turn a rule off.
        for clinic in parse_clinic_file(path):
            try:
                check_clinic_rules(clinic.settings.outreach.compliance)
            except OutreachRulesError as exc:
                print(f"error: {path}: clinic {clinic.slug}: settings.outreach.compliance: "
                      f"{exc}", file=sys.stderr)
                return 2
        clinics = load_clinics_file(database_url=get_settings().database_url, path=path)
    except ClinicConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"loaded {len(clinics)} clinic(s) from {path}: {', '.join(clinics)}")
    unknown = _hook_secrets_without_a_clinic()
    if unknown:
        # A misspelt slug leaves its clinic on the shared secret (or without the hook).
        print(f"warning: MISSED_CALL_HOOK_SECRETS names no clinic: {', '.join(unknown)}",
              file=sys.stderr)
    return 0


def _hook_secrets_without_a_clinic() -> list[str]:
    from sqlalchemy import select

    from booking.db import get_engine, session_factory
    from booking.models import Clinic

    settings = get_settings()
    if not settings.missed_call_hook_secrets:
        return []
    with session_factory(get_engine(settings.database_url))() as session:
        slugs = set(session.execute(select(Clinic.slug)).scalars())
    return sorted(set(settings.missed_call_hook_secrets) - slugs)


def run(args: argparse.Namespace) -> int:
    from stack.supervisor import Supervisor, services, with_backend_tokens

    settings = get_settings()
    if migrate(args) or load_clinics(argparse.Namespace(file=None)):
        return 2
    if not MODEL.exists():
        print(f"error: no trained model at {MODEL}; run `make train`", file=sys.stderr)
        return 2
    env = dict(os.environ)
    # Without a Twilio endpoint of their own, people get the local simulator, not real texts.
    with_simulator = "TWILIO_API_BASE_URL" not in os.environ
    if with_simulator:
        env["TWILIO_API_BASE_URL"] = f"http://127.0.0.1:{settings.twilio_fake_port}"
    settings, env = with_backend_tokens(env)
    run_dir = PROJECT_ROOT / "var"
    run_dir.mkdir(exist_ok=True)
    # Made private even when an older version created it open to everyone.
    run_dir.chmod(0o700)
    for made in run_dir.glob("*.db*"):
        made.chmod(0o600)
    supervisor = Supervisor(services(settings, model=MODEL, run_dir=run_dir,
                                     with_simulator=with_simulator),
                            env=env, log_dir=run_dir / "logs")
    print("starting Rasa, the action server and the gateway (logs in var/logs/) ...")
    if not supervisor.start():
        return 0  # stopped by a signal while starting; every child is stopped too
    print("ready")
    print(f"  gateway        {settings.gateway_public_url}  (Twilio webhooks, console)")
    if with_simulator:
        print(f"  phone          http://127.0.0.1:{settings.twilio_fake_port}/phone"
              "?clinic=%2B441632960001  (play the patient)")
    print("  `make demo` in another terminal plays a missed call end to end; Ctrl-C stops all")
    return supervisor.wait()


# `ringback serve` names for the processes of stack.supervisor.services.
SERVED = {"gateway": "gateway", "rasa": "rasa", "actions": "action server"}


def serve(args: argparse.Namespace) -> int:
    """One process of the stack in the foreground, configured by the environment alone: a
    container's command (docker/, deploy/). Unlike `run`, it makes no tokens and no database:
    RASA_TOKEN and ACTION_SERVER_TOKEN must be given, the schema is `ringback migrate`'s."""
    import tempfile

    from stack.supervisor import services

    settings = get_settings()
    missing = [name for name in ("RASA_TOKEN", "ACTION_SERVER_TOKEN")
               if not getattr(settings, name.lower())]
    if missing:
        print(f"error: {' and '.join(missing)} must be set", file=sys.stderr)
        return 2
    if args.process == "rasa" and not MODEL.exists():
        print(f"error: no trained model at {MODEL}", file=sys.stderr)
        return 2
    # Rasa's endpoints.yml (it holds the tokens and passwords) in a private directory.
    run_dir = Path(tempfile.mkdtemp(prefix="ringback-"))
    (service,) = [each for each in services(settings, model=MODEL, run_dir=run_dir,
                                            with_simulator=False)
                  if each.name == SERVED[args.process]]
    sys.stdout.flush()
    os.chdir(PROJECT_ROOT)  # as the supervisor starts its children
    os.execv(service.command[0], service.command)


def cluster(_: argparse.Namespace) -> int:
    """The production topology on this machine (stack/cluster.py); a throw-away PostgreSQL and
    Redis of its own unless DATABASE_URL and REDIS_URL name them."""
    import contextlib

    from stack.cluster import start_cluster
    from stack.local_services import OwnPostgres, OwnRedis, free_port, postgres_scratch_dir

    if not MODEL.exists():
        print(f"error: no trained model at {MODEL}; run `make train`", file=sys.stderr)
        return 2
    run_dir = PROJECT_ROOT / "var" / "cluster"
    run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    env = dict(os.environ)
    with contextlib.ExitStack() as own:
        if not env.get("DATABASE_URL", "").startswith("postgresql"):
            scratch = own.enter_context(postgres_scratch_dir())
            database = OwnPostgres(scratch / "data", free_port())
            print(f"starting a throw-away PostgreSQL in {database.data_dir} ...")
            database.start()
            own.callback(database.stop)
            env["DATABASE_URL"] = database.url
        if not env.get("REDIS_URL"):
            locks = OwnRedis(run_dir / "redis", free_port())
            locks.start()
            own.callback(locks.stop)
            env["REDIS_URL"] = locks.url
        print("starting nginx, the gateways, Rasa and the action servers "
              f"(logs in {run_dir / 'logs'}) ...")
        settings, env, supervisor = start_cluster(env, model=MODEL, run_dir=run_dir)
        if supervisor is None:
            return 0  # stopped by a signal while starting
        print("ready")
        for service in supervisor.services:
            print(f"  {service.name:<16} {service.health_url.split('?')[0]}")
        print(f"  {'postgresql':<16} {settings.database_url.split('@')[-1]}")
        print(f"  {'redis':<16} {settings.redis_url.split('@')[-1]}")
        print(f"Twilio's webhooks go to {settings.gateway_public_url}; a process that dies is "
              "restarted; Ctrl-C stops all")
        return supervisor.keep_running()


def simulator(args: argparse.Namespace) -> int:
    import uvicorn

    from simulator.twilio_fake import FakeConfig, create_app

    settings = get_settings()
    config = FakeConfig(
        account_sid=settings.twilio_account_sid, auth_token=settings.twilio_auth_token,
        gateway_url=settings.gateway_public_url,
        state_file=Path(args.state_file) if args.state_file else None,
    )
    uvicorn.run(create_app(config), host="127.0.0.1", port=args.port, log_level="warning")
    return 0


def funnel(args: argparse.Namespace) -> int:
    from booking.clinics.lookups import find_clinic_by_slug
    from booking.db import session_scope
    from booking.models import utcnow
    from booking.reports.metrics import clinic_figures
    from booking.reports.periods import last_days
    from booking.reports.summary import summary_lines

    with session_scope() as session:
        clinic = find_clinic_by_slug(session, args.clinic)
        if clinic is None:
            print(f"error: no clinic {args.clinic!r}", file=sys.stderr)
            return 2
        period = last_days(args.days, now=utcnow(), zone=clinic.timezone)
        now = clinic_figures(session, clinic_id=clinic.id, period=period)
        before = clinic_figures(session, clinic_id=clinic.id, period=period.previous())
    print(f"{clinic.name}, last {args.days} day(s) (the {args.days} before in brackets):")
    print("\n".join(summary_lines(now, before)))
    return 0


def seed_history(args: argparse.Namespace) -> int:
    from booking.db import session_scope
    from booking.models import utcnow
    from stack.seed_history import AlreadySeeded
    from stack.seed_history import seed_history as seed

    if get_settings().is_production:
        print("error: seed-history makes up patients; it never runs with "
              "ENVIRONMENT=production", file=sys.stderr)
        return 2
    if not 1 <= args.days <= 1000:
        print("error: --days must be between 1 and 1000", file=sys.stderr)
        return 2
    try:
        with session_scope() as session:
            made = seed(session, clinic_slug=args.clinic, days=args.days, end=utcnow(),
                        missed_per_day=args.missed_per_day)
    except LookupError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    except AlreadySeeded as exc:
        # `make demo` runs this every time: seeding once is enough.
        print(f"{exc.args[0]}; nothing added")
        return 0
    print(f"{args.clinic}: {args.days} days of SYNTHETIC history: {made.calls} calls "
          f"({made.missed} missed), {made.messages} messages, {made.appointments} "
          f"appointments, {made.escalations} escalations")
    return 0


def demo(args: argparse.Namespace) -> int:
    from stack.demo import main as demo_main

    return demo_main(simulator_url=args.simulator_url,
                     gateway_url=get_settings().gateway_public_url)


def purge(args: argparse.Namespace) -> int:
    from booking.db import session_factory
    from booking.models import utcnow
    from booking.records.retention import purge as purge_words
    from booking.records.tracker_store import TrackerStore

    settings = get_settings()
    tracker = TrackerStore(settings.rasa_tracker_store_url)
    try:
        done = purge_words(session_factory(), tracker, now=utcnow(), clinic_slug=args.clinic)
    finally:
        tracker.close()
    if args.clinic and not done:
        print(f"error: no clinic {args.clinic!r}", file=sys.stderr)
        return 2
    for result in done:
        print(f"{result.clinic}: words before {result.cutoff:%Y-%m-%d %H:%M} UTC removed from "
              f"{result.messages} messages, {result.inbox_items} inbox items, "
              f"{result.escalations} escalations, {result.tracker_events} Rasa events")
    return 0


def patient(args: argparse.Namespace) -> int:
    """Export (JSON on stdout) or erase what one clinic holds about one phone number."""
    from booking.clinics.lookups import find_clinic_by_slug
    from booking.db import session_scope
    from booking.messaging.phones import to_e164
    from booking.records import patient_rights
    from booking.records.tracker_store import TrackerStore

    settings = get_settings()
    tracker = TrackerStore(settings.rasa_tracker_store_url)
    # The audit trail's "who" and "from where" for a command run on the server.
    actor, address = f"cli:{getpass.getuser()}", socket.gethostname()
    try:
        with session_scope() as session:
            clinic = find_clinic_by_slug(session, args.clinic)
            if clinic is None:
                print(f"error: no clinic {args.clinic!r}", file=sys.stderr)
                return 2
            try:
                phone = to_e164(args.phone, default_region=clinic.country)
            except ValueError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            act = patient_rights.export if args.action == "export" else patient_rights.erase
            result = act(session, tracker, clinic=clinic, phone=phone, actor=actor,
                         address=address)
    except patient_rights.UnknownPatient as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        tracker.close()
    if args.action == "export":
        json.dump(result, sys.stdout, indent=2, ensure_ascii=False)
        print()
    else:
        print(f"erased {phone} at {args.clinic}: "
              + ", ".join(f"{n} {what}" for what, n in result.items()))
    return 0


def rotate_field_keys(_: argparse.Namespace) -> int:
    from booking.db import get_engine
    from booking.field_encryption import FieldKeyError, key_ring, rotate

    try:
        current = key_ring().current_id
        with get_engine(get_settings().database_url).begin() as connection:
            rotated = rotate(connection)
    except FieldKeyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"every sealed value is under key {current!r} now: "
          + ", ".join(f"{n} re-sealed in {column}" for column, n in rotated.items()))
    return 0


def new_field_key(_: argparse.Namespace) -> int:
    from booking.field_encryption import new_key

    print(new_key())
    return 0


def main(argv: list[str] | None = None) -> int:
    from stack.supervisor import PRIVATE_UMASK

    # The database files `migrate` creates, and everything else a command writes, hold
    # patient data: readable by this user only.
    os.umask(PRIVATE_UMASK)
    try:
        get_settings()
    except ValidationError as exc:  # production's refusals: say why, not a traceback
        reasons = "\n".join(f"  {line}" for error in exc.errors()
                             for line in error["msg"].splitlines())
        print(f"ringback: the configuration is refused:\n{reasons}", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog="ringback")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="bring the database to the newest schema").set_defaults(
        handler=migrate)
    loader = commands.add_parser("load-clinics", help="validate and load the clinics YAML")
    loader.add_argument("--file")
    loader.set_defaults(handler=load_clinics)
    commands.add_parser("run", help="start the whole stack").set_defaults(handler=run)
    server = commands.add_parser(
        "serve", help="run one process (gateway, rasa or actions) in the foreground")
    server.add_argument("process", choices=sorted(SERVED))
    server.set_defaults(handler=serve)
    commands.add_parser(
        "cluster", help="nginx, two gateways, two Rasa, two action servers, PostgreSQL, Redis"
    ).set_defaults(handler=cluster)
    fake = commands.add_parser("simulator", help="run the local Twilio simulator")
    fake.add_argument("--port", type=int, default=get_settings().twilio_fake_port)
    fake.add_argument("--state-file")
    fake.set_defaults(handler=simulator)
    report = commands.add_parser("funnel", help="calls missed, texted, answered, booked")
    report.add_argument("--clinic", default="riverside")
    report.add_argument("--days", type=int, default=7)
    report.set_defaults(handler=funnel)
    seeder = commands.add_parser(
        "seed-history", help="fill a development database with SYNTHETIC history")
    seeder.add_argument("--clinic", default="riverside")
    seeder.add_argument("--days", type=int, default=90)
    seeder.add_argument("--missed-per-day", type=float, default=8.0)
    seeder.set_defaults(handler=seed_history)
    player = commands.add_parser("demo", help="play a missed call through the running stack")
    player.add_argument("--simulator-url",
                        default=f"http://127.0.0.1:{get_settings().twilio_fake_port}")
    player.set_defaults(handler=demo)
    purger = commands.add_parser(
        "purge", help="remove message bodies and transcripts past each clinic's retention")
    purger.add_argument("--clinic", help="one clinic's slug (default: every clinic)")
    purger.set_defaults(handler=purge)
    commands.add_parser(
        "rotate-field-keys",
        help="re-seal dates of birth and emails with the first FIELD_ENCRYPTION_KEYS key",
    ).set_defaults(handler=rotate_field_keys)
    commands.add_parser("new-field-key", help="print a new key for FIELD_ENCRYPTION_KEYS"
                        ).set_defaults(handler=new_field_key)
    rights = commands.add_parser("patient", help="a patient's export or erasure")
    rights.add_argument("action", choices=["export", "erase"])
    rights.add_argument("--clinic", required=True)
    rights.add_argument("--phone", required=True)
    rights.set_defaults(handler=patient)
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
