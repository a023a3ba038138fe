"""Arrivals: each inbound message exactly as Twilio posted it, stored by the messaging webhook
before Twilio gets its answer, then taken into the inbox.

The webhook's share is one INSERT for a whole burst (`store`; a MessageSid already stored is
skipped), so fifty patients writing at once get their answers in milliseconds. What a message
sets off (`inbox.accept`: contact and thread, keywords, staff replies, the red-flag rules,
the inbox item) runs right after, in `take_in`: in arrival order, one pass at a time across
every gateway process, each arrival deleted in the transaction that takes it in. A process that
stops between the two leaves its arrivals stored; the next pass, in any process, takes them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, delete, false, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from booking.messaging import inbox
from booking.models import Arrival, Channel

logger = logging.getLogger(__name__)
# An arrival whose intake failed this often stays stored, for a person to look at.
MAX_ATTEMPTS = 5
MAX_ERROR_CHARS = 300
# Any fixed number: the key of the PostgreSQL advisory lock one intake pass holds.
_INTAKE_LOCK = 0x52696E67  # "Ring"


@dataclass(frozen=True)
class NewArrival:
    channel: Channel
    params: dict[str, str]
    received_at: datetime


@dataclass(frozen=True)
class TakenIn:
    reply_ids: tuple[int, ...]  # stored by the intake (keywords, staff, safety net): send now
    queued: bool  # an inbox item waits for the dialogue
    handled: int  # arrivals this pass took in or failed to


def store(session: Session, arrivals: Sequence[NewArrival]) -> None:
    """Store a burst of arrivals in one statement; a MessageSid Twilio sent before is skipped."""
    insert = (postgresql.insert if session.get_bind().dialect.name == "postgresql"
              else sqlite.insert)
    session.execute(insert(Arrival).values([
        {"message_sid": a.params["MessageSid"], "channel": a.channel, "params": a.params,
         "received_at": a.received_at, "attempts": 0} for a in arrivals
    ]).on_conflict_do_nothing(index_elements=["message_sid"]))


# Built once: every pass reads it.
_OLDEST = (select(Arrival).where(Arrival.attempts < MAX_ATTEMPTS).order_by(Arrival.id)
           .limit(bindparam("limit")))


# Built once, like the look above.
_TAKEN = delete(Arrival).where(Arrival.id.in_(bindparam("ids", expanding=True)))


def take_in(session: Session, *, limit: int, each_apart: bool = True) -> TakenIn:
    """Take up to `limit` stored arrivals into the inbox, oldest first.

    `each_apart`: each arrival in a savepoint of its own, so one that cannot be taken in is
    marked and costs the others nothing. Without, a pass is two statements an arrival cheaper,
    and any arrival's failure fails it whole: the caller rolls back and takes them in apart.
    """
    _one_pass_at_a_time(session)
    arrivals = session.execute(_OLDEST, {"limit": limit}).scalars().all()
    reply_ids: list[int] = []
    queued = False
    taken: list[int] = []
    for arrival in arrivals:
        if each_apart:
            try:
                with session.begin_nested():
                    accepted = _accept(session, arrival)
            except Exception as exc:  # this message's own failure must not cost the others theirs
                arrival.attempts += 1
                arrival.last_error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
                logger.error("arrival %s could not be taken in (attempt %s of %s)", arrival.id,
                             arrival.attempts, MAX_ATTEMPTS, exc_info=True)
                continue
        else:
            accepted = _accept(session, arrival)
        reply_ids.extend(accepted.reply_ids)
        queued = queued or accepted.queued
        taken.append(arrival.id)
    if taken:
        session.connection().execute(_TAKEN, {"ids": taken})
    return TakenIn(reply_ids=tuple(reply_ids), queued=queued, handled=len(arrivals))


def _accept(session: Session, arrival: Arrival) -> inbox.Accepted:
    return inbox.accept(session, channel=arrival.channel, params=arrival.params,
                        now=arrival.received_at)


def _one_pass_at_a_time(session: Session) -> None:
    """Passes of several processes must not interleave, or a patient's two messages could be
    taken in out of order. Held until the pass commits."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _INTAKE_LOCK})
    else:  # SQLite has one writer: take its write lock before reading
        session.execute(update(Arrival).where(false()).values(attempts=0))
