"""The booking database: every row belongs to one clinic, every instant is stored in UTC."""

from __future__ import annotations

import enum
from datetime import datetime, timezone

from sqlalchemy import (
    DDL,
    JSON,
    Boolean,
    Column,
    Date,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    Time,
    TypeDecorator,
    UniqueConstraint,
    event,
    text,
    true,
)
from sqlalchemy.orm import declarative_base, relationship

from booking.field_encryption import SealedDate, SealedText

Base = declarative_base()


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite forgets the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where a UTC instant is required")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def _enum(enum_cls: type[enum.Enum], name: str) -> Enum:
    # Stored as plain strings so adding a value is a data change, not a type migration.
    return Enum(enum_cls, name=name, native_enum=False, length=32, validate_strings=True)


class ChannelPolicy(str, enum.Enum):
    sms = "sms"
    whatsapp = "whatsapp"
    whatsapp_then_sms = "whatsapp_then_sms"


class Channel(str, enum.Enum):
    sms = "sms"
    whatsapp = "whatsapp"


class Clinic(Base):
    __tablename__ = "clinics"

    id = Column(Integer, primary_key=True)
    slug = Column(String(64), nullable=False, unique=True)
    name = Column(String(200), nullable=False)
    timezone = Column(String(64), nullable=False)
    country = Column(String(2), nullable=False)
    locale = Column(String(16), nullable=False, default="en-GB")
    voice_number = Column(String(20), unique=True)
    sms_number = Column(String(20), unique=True)
    whatsapp_number = Column(String(20), unique=True)
    front_desk_number = Column(String(20))
    ring_timeout_seconds = Column(Integer, nullable=False, default=18)
    call_screening = Column(Boolean, nullable=False, default=False)
    channel_policy = Column(_enum(ChannelPolicy, "channel_policy"), nullable=False,
                            default=ChannelPolicy.sms)
    address = Column(Text, nullable=False, default="")
    emergency_info = Column(Text, nullable=False, default="")
    out_of_hours_info = Column(Text, nullable=False, default="")
    scheduling_adapter = Column(String(64), nullable=False, default="builtin")
    scheduling_config = Column(JSON, nullable=False, default=dict)
    # Wording, FAQ answers and policies a clinic changes without a migration or retraining.
    settings = Column(JSON, nullable=False, default=dict)
    created_at = Column(UTCDateTime, nullable=False, default=utcnow)
    updated_at = Column(UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow)

    opening_hours = relationship("OpeningHours", cascade="all, delete-orphan",
                                 order_by="(OpeningHours.weekday, OpeningHours.opens)")
    closures = relationship("Closure", cascade="all, delete-orphan", order_by="Closure.starts_on")
    services = relationship("Service", cascade="all, delete-orphan", order_by="Service.id")
    providers = relationship("Provider", cascade="all, delete-orphan", order_by="Provider.id")
    staff = relationship("StaffMember", cascade="all, delete-orphan", order_by="StaffMember.id")
    on_call_shifts = relationship("OnCallShift", cascade="all, delete-orphan",
                                  order_by="(OnCallShift.weekday, OnCallShift.starts)")


class OpeningHours(Base):
    """One open interval in clinic-local wall time; a day may have several (lunch break)."""

    __tablename__ = "opening_hours"

    id = Column(Integer, primary_key=True)
    clinic_id = Column(ForeignKey("clinics.id", ondelete="CASCADE"), nullable=False, index=True)
    weekday = Column(Integer, nullable=False)  # Monday == 0, as datetime.weekday()
    opens = Column(Time, nullable=False)
    closes = Column(Time, nullable=False)


class Closure(Base):
    """Whole local days the clinic is shut (holidays, training days), inclusive."""

    __tablename__ = "closures"

    id = Column(Integer, primary_key=True)
    clinic_id = Column(ForeignKey("clinics.id", ondelete="CASCADE"), nullable=False, index=True)
    starts_on = Column(Date, nullable=False)
    ends_on = Column(Date, nullable=False)
    reason = Column(String(200), nullable=False, default="")


service_providers = Table(
    "service_providers",
    Base.metadata,
    Column("service_id", ForeignKey("services.id", ondelete="CASCADE"), primary_key=True),
    Column("provider_id", ForeignKey("providers.id", ondelete="CASCADE"), primary_key=True),
)


class Service(Base):
    __tablename__ = "services"
    __table_args__ = (UniqueConstraint("clinic_id", "slug"),)

    id = Column(Integer, primary_key=True)
    clinic_id = Column(ForeignKey("clinics.id", ondelete="CASCADE"), nullable=False, index=True)
    slug = Column(String(64), nullable=False)
    name = Column(String(200), nullable=False)
    synonyms = Column(JSON, nullable=False, default=list)
    duration_minutes = Column(Integer, nullable=False)
    buffer_minutes = Column(Integer, nullable=False, default=0)
    price_min = Column(Integer)
    price_max = Column(Integer)
    currency = Column(String(3))
    # What one appointment is worth to the clinic, for the dashboard's recovered-revenue
    # estimate; without it the price range's midpoint is used.
    value = Column(Integer)
    preparation_notes = Column(Text, nullable=False, default="")

    providers = relationship("Provider", secondary=service_providers, back_populates="services",
                             order_by="Provider.id")


class Provider(Base):
    __tablename__ = "providers"
    __table_args__ = (UniqueConstraint("clinic_id", "slug"),)

    id = Column(Integer, primary_key=True)
    clinic_id = Column(ForeignKey("clinics.id", ondelete="CASCADE"), nullable=False, index=True)
    slug = Column(String(64), nullable=False)
    name = Column(String(200), nullable=False)

    services = relationship("Service", secondary=service_providers, back_populates="providers")
    hours = relationship("ProviderHours", cascade="all, delete-orphan",
                         order_by="(ProviderHours.weekday, ProviderHours.starts)")


class ProviderHours(Base):
    __tablename__ = "provider_hours"

    id = Column(Integer, primary_key=True)
    provider_id = Column(ForeignKey("providers.id", ondelete="CASCADE"), nullable=False,
                         index=True)
    weekday = Column(Integer, nullable=False)
    starts = Column(Time, nullable=False)
    ends = Column(Time, nullable=False)


class ConsoleAccount(Base):
    """A person's console log-in: one username and password, whichever clinics they work for.

    What they may do at each clinic is their `StaffMember` row there (the membership: clinic,
    role, enabled). An invited person has no password until they follow their one-time link.
    """

    __tablename__ = "console_accounts"

    id = Column(Integer, primary_key=True)
    username = Column(String(120), nullable=False, unique=True)
    name = Column(String(200), nullable=False)
    password_hash = Column(String(255))
    # The hash a clinic file last set: an unchanged file never undoes a reset made in the console.
    file_password_hash = Column(String(255))
    # A SHA-256 of the one-time invite or reset token (the token itself is shown once).
    invite_token_hash = Column(String(64), unique=True)
    invite_expires_at = Column(UTCDateTime)
    created_at = Column(UTCDateTime, nullable=False, default=utcnow)


class ConsoleRole(str, enum.Enum):
    staff = "staff"  # the queue, threads, appointments, the dashboard
    admin = "admin"  # also the clinic's people (invite, reset, disable, role) and audit trail


class StaffMember(Base):
    """Someone at the clinic: receives alerts, and, linked to a `ConsoleAccount`, is that
    person's membership of this clinic in the console (their role here, enabled or not)."""

    __tablename__ = "staff_members"
    __table_args__ = (UniqueConstraint("clinic_id", "slug"),
                      Index("uq_staff_members_clinic_account", "clinic_id", "account_id",
                            unique=True))

    id = Column(Integer, primary_key=True)
    clinic_id = Column(ForeignKey("clinics.id", ondelete="CASCADE"), nullable=False, index=True)
    slug = Column(String(64), nullable=False)
    name = Column(String(200), nullable=False)
    role = Column(String(64), nullable=False, default="reception")
    phone = Column(String(20))
    email = Column(String(320))
    alert_channel = Column(_enum(Channel, "alert_channel"), nullable=False, default=Channel.sms)
    is_backup = Column(Boolean, nullable=False, default=False)
    handles_billing = Column(Boolean, nullable=False, default=False)
    # Console log-in; null means alerts only.
    account_id = Column(ForeignKey("console_accounts.id"), index=True)
    console_role = Column(_enum(ConsoleRole, "console_role"))
    console_enabled = Column(Boolean, nullable=False, default=True, server_default=true())
    # Made by a clinic file (which may retire it) or in the console (which the file leaves be).
    from_file = Column(Boolean, nullable=False, default=True, server_default=true())

    account = relationship("ConsoleAccount")


class OnCallShift(Base):
    """Who is on call, by local weekday and wall-clock interval."""

    __tablename__ = "on_call_shifts"

    id = Column(Integer, primary_key=True)
    clinic_id = Column(ForeignKey("clinics.id", ondelete="CASCADE"), nullable=False, index=True)
    staff_id = Column(ForeignKey("staff_members.id", ondelete="CASCADE"), nullable=False)
    weekday = Column(Integer, nullable=False)
    starts = Column(Time, nullable=False)
    ends = Column(Time, nullable=False)

    staff = relationship("StaffMember")


class Consent(str, enum.Enum):
    implied = "implied"  # they called us; a reply to that call is expected
    opted_in = "opted_in"
    opted_out = "opted_out"


class Contact(Base):
    """A caller as one clinic knows them; the same phone at two clinics is two contacts."""

    __tablename__ = "contacts"
    __table_args__ = (UniqueConstraint("clinic_id", "phone"),)

    id = Column(Integer, primary_key=True)
    clinic_id = Column(ForeignKey("clinics.id", ondelete="CASCADE"), nullable=False, index=True)
    phone = Column(String(20), nullable=False)  # E.164
    first_name = Column(String(120))
    last_name = Column(String(120))
    # Asked before booking only when the clinic requires them (settings.required_patient_fields).
    # Sealed at rest (booking.field_encryption): the raw column holds "<key id>:<token>".
    date_of_birth = Column(SealedDate)
    email = Column(SealedText)
    is_known_patient = Column(Boolean, nullable=False, default=False)
    consent = Column(_enum(Consent, "consent"), nullable=False, default=Consent.implied)
    consent_changed_at = Column(UTCDateTime)
    # WhatsApp's 24-hour customer-service window opens at the patient's last message.
    last_whatsapp_inbound_at = Column(UTCDateTime)
    whatsapp_unreachable = Column(Boolean, nullable=False, default=False)
    created_at = Column(UTCDateTime, nullable=False, default=utcnow)


class Patient(Base):
    """The person an appointment is for; a contact (one phone) may book for several, such as
    a parent for their children. The phone's owner, when they book for themselves, is the
    patient whose relation is "self"."""

    __tablename__ = "patients"

    id = Column(Integer, primary_key=True)
    clinic_id = Column(ForeignKey("clinics.id", ondelete="CASCADE"), nullable=False)
    contact_id = Column(ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False,
                        index=True)
    # To the phone's owner: "self", "daughter", "mother"...; null when they only gave a name.
    relation = Column(String(32))
    first_name = Column(String(120))
    last_name = Column(String(120))
    # Asked before booking only when the clinic requires it (settings.required_patient_fields).
    date_of_birth = Column(SealedDate)  # sealed at rest, as the contact's
    is_known_patient = Column(Boolean, nullable=False, default=False)
    created_at = Column(UTCDateTime, nullable=False, default=utcnow)

    contact = relationship("Contact")


class AppointmentStatus(str, enum.Enum):
    booked = "booked"
    cancelled = "cancelled"
    rescheduled = "rescheduled"
    completed = "completed"
    no_show = "no_show"


class Appointment(Base):
    __tablename__ = "appointments"
    __table_args__ = (
        UniqueConstraint("clinic_id", "idempotency_key"),
        Index("ix_appointments_clinic_start", "clinic_id", "starts_at"),
        # The dashboard's bookings of a period.
        Index("ix_appointments_clinic_created", "clinic_id", "created_at"),
    )

    id = Column(Integer, primary_key=True)
    clinic_id = Column(ForeignKey("clinics.id", ondelete="CASCADE"), nullable=False)
    contact_id = Column(ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False, index=True)
    # Who the appointment is for; the contact is the phone that booked it. Every booking the
    # bot makes names one; null only for a row keyed in elsewhere without a person (then it is
    # the contact's own), and a null column needs no table rebuild on SQLite.
    patient_id = Column(ForeignKey("patients.id"), index=True)
    service_id = Column(ForeignKey("services.id"), nullable=False)
    provider_id = Column(ForeignKey("providers.id"))
    starts_at = Column(UTCDateTime, nullable=False)
    ends_at = Column(UTCDateTime, nullable=False)
    status = Column(_enum(AppointmentStatus, "appointment_status"), nullable=False,
                    default=AppointmentStatus.booked)
    source = Column(String(32), nullable=False, default="bot")
    external_id = Column(String(255))
    idempotency_key = Column(String(128), nullable=False)
    rescheduled_from_id = Column(ForeignKey("appointments.id"))
    # The patient said they will come, answering a reminder.
    confirmed_at = Column(UTCDateTime)
    created_at = Column(UTCDateTime, nullable=False, default=utcnow)
    updated_at = Column(UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow)

    contact = relationship("Contact")
    patient = relationship("Patient")
    service = relationship("Service")
    provider = relationship("Provider")


class SlotClaim(Base):
    """One row per occupied grid cell of a provider's calendar.

    The primary key makes the database itself refuse a second booking that overlaps
    the first, on SQLite and PostgreSQL alike, however many processes race.
    """

    __tablename__ = "slot_claims"

    clinic_id = Column(ForeignKey("clinics.id", ondelete="CASCADE"), primary_key=True)
    resource = Column(String(64), primary_key=True)  # provider slug, or "clinic" without one
    cell_start = Column(UTCDateTime, primary_key=True)
    appointment_id = Column(ForeignKey("appointments.id", ondelete="CASCADE"), nullable=False,
                            index=True)


class ThreadState(str, enum.Enum):
    bot = "bot"
    handed_off = "handed_off"
    closed = "closed"


class Thread(Base):
    """One conversation between a clinic and a contact; its Rasa sender id names both."""

    __tablename__ = "threads"

    id = Column(Integer, primary_key=True)
    clinic_id = Column(ForeignKey("clinics.id", ondelete="CASCADE"), nullable=False, index=True)
    contact_id = Column(ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False)
    sender_id = Column(String(100), nullable=False, unique=True)
    channel = Column(_enum(Channel, "thread_channel"), nullable=False, default=Channel.sms)
    state = Column(_enum(ThreadState, "thread_state"), nullable=False, default=ThreadState.bot)
    handed_off_to_id = Column(ForeignKey("staff_members.id"))
    opened_at = Column(UTCDateTime, nullable=False, default=utcnow)
    last_activity_at = Column(UTCDateTime, nullable=False, default=utcnow)

    contact = relationship("Contact")
    clinic = relationship("Clinic")


class Direction(str, enum.Enum):
    inbound = "inbound"
    outbound = "outbound"


class MessageStatus(str, enum.Enum):
    received = "received"
    pending = "pending"  # stored, not yet accepted by Twilio
    sending = "sending"
    queued = "queued"  # accepted by Twilio
    sent = "sent"
    delivered = "delivered"
    read = "read"
    undelivered = "undelivered"
    failed = "failed"
    suppressed = "suppressed"  # never sent: opted out


class Message(Base):
    """The message log and the outbox: every outbound row is written before it is sent."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("twilio_sid"),
        Index("ix_messages_outbox", "status", "next_attempt_at"),
        Index("ix_messages_thread", "thread_id", "created_at"),
        # The outbox's per-recipient ordering, and a contact's latest message (channel choice).
        Index("ix_messages_recipient", "to_number", "from_number", "status"),
        Index("ix_messages_sender", "from_number", "clinic_id"),
        # The dashboard's period counts (undeliverable messages).
        Index("ix_messages_clinic_time", "clinic_id", "created_at"),
    )

    id = Column(Integer, primary_key=True)
    clinic_id = Column(ForeignKey("clinics.id", ondelete="CASCADE"), nullable=False)
    thread_id = Column(ForeignKey("threads.id", ondelete="CASCADE"))
    direction = Column(_enum(Direction, "direction"), nullable=False)
    channel = Column(_enum(Channel, "message_channel"), nullable=False)
    # Who wrote it: "patient", "bot", "staff:<id>", "system" (alerts, opt-out confirmations).
    author = Column(String(64), nullable=False)
    from_number = Column(String(40), nullable=False)
    to_number = Column(String(40), nullable=False)
    body = Column(Text, nullable=False, default="")
    content_sid = Column(String(64))
    content_variables = Column(JSON)
    media_count = Column(Integer, nullable=False, default=0)
    twilio_sid = Column(String(64))
    status = Column(_enum(MessageStatus, "message_status"), nullable=False)
    error_code = Column(String(16))
    attempts = Column(Integer, nullable=False, default=0)
    next_attempt_at = Column(UTCDateTime)
    created_at = Column(UTCDateTime, nullable=False, default=utcnow)
    sent_at = Column(UTCDateTime)
    status_updated_at = Column(UTCDateTime)


class InboxState(str, enum.Enum):
    waiting = "waiting"  # stored; the dialogue has not answered it yet
    answered = "answered"  # the dialogue's replies are in the outbox
    held = "held"  # staff hold the thread: for them, not the bot
    handed_to_staff = "handed_to_staff"  # waited too long for the dialogue
    expired = "expired"  # an event the dialogue could not be told in time: no one waits on it


class InboxItem(Base):
    """A patient message on its way to the dialogue: stored before Twilio gets its answer,
    done only once the dialogue's replies are stored. Each thread's items go in id order.

    Or an event the dialogue must hear of in that order (`intent`, e.g. the missed call whose
    text-back `message_id` is): told to Rasa as an external intent, before the patient's reply.
    """

    __tablename__ = "inbox_items"
    __table_args__ = (
        Index("ix_inbox_items_due", "state", "next_attempt_at"),
        Index("ix_inbox_items_thread", "thread_id", "state", "id"),
    )

    id = Column(Integer, primary_key=True)
    message_id = Column(ForeignKey("messages.id", ondelete="CASCADE"), nullable=False,
                        unique=True)
    thread_id = Column(ForeignKey("threads.id", ondelete="CASCADE"), nullable=False)
    text = Column(Text, nullable=False)
    intent = Column(String(64))
    state = Column(_enum(InboxState, "inbox_state"), nullable=False, default=InboxState.waiting)
    attempts = Column(Integer, nullable=False, default=0)
    next_attempt_at = Column(UTCDateTime)
    # A worker's claim: another may take the item only once the lease has run out.
    claim_token = Column(String(36))
    claimed_until = Column(UTCDateTime)
    received_at = Column(UTCDateTime, nullable=False, default=utcnow)
    finished_at = Column(UTCDateTime)
    last_error = Column(String(300))

    thread = relationship("Thread")
    message = relationship("Message")


class Arrival(Base):
    """A message exactly as Twilio posted it, stored by the messaging webhook before Twilio gets
    its answer and kept only until the intake has taken it into the inbox
    (`booking.messaging.arrivals`)."""

    __tablename__ = "arrivals"

    id = Column(Integer, primary_key=True)
    message_sid = Column(String(64), nullable=False, unique=True)
    channel = Column(_enum(Channel, "arrival_channel"), nullable=False)
    params = Column(JSON, nullable=False)
    received_at = Column(UTCDateTime, nullable=False)
    # Failed intakes: the arrival stays (nothing is lost) and is retried a few times.
    attempts = Column(Integer, nullable=False, default=0)
    last_error = Column(String(300))


class MissedCallStatus(str, enum.Enum):
    pending = "pending"  # recorded; text-back not yet sent
    texted = "texted"
    duplicate = "duplicate"  # same caller rang again shortly after; one text-back covers both
    opted_out = "opted_out"
    answered = "answered"
    # Not texted for a fraud limit (MissedCall.refused_reason says which): a country the clinic
    # does not text, a costly number type, or an hourly cap reached.
    refused = "refused"


class MissedCall(Base):
    __tablename__ = "missed_calls"
    __table_args__ = (
        UniqueConstraint("clinic_id", "call_sid"),
        # The dashboard's calls of a period.
        Index("ix_missed_calls_clinic_time", "clinic_id", "occurred_at"),
    )

    id = Column(Integer, primary_key=True)
    clinic_id = Column(ForeignKey("clinics.id", ondelete="CASCADE"), nullable=False, index=True)
    contact_id = Column(ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False)
    call_sid = Column(String(64), nullable=False)
    source = Column(String(32), nullable=False, default="twilio")
    dial_status = Column(String(32), nullable=False)
    status = Column(_enum(MissedCallStatus, "missed_call_status"), nullable=False,
                    default=MissedCallStatus.pending)
    occurred_at = Column(UTCDateTime, nullable=False, default=utcnow)
    texted_at = Column(UTCDateTime)
    thread_id = Column(ForeignKey("threads.id"))
    refused_reason = Column(String(64))  # why a `refused` call was not texted

    contact = relationship("Contact")


class EscalationReason(str, enum.Enum):
    urgent = "urgent"
    billing = "billing"
    human = "human"
    not_understood = "not_understood"
    # The dialogue (Rasa or the action server) could not answer within INBOX_MAX_WAIT_SECONDS.
    bot_unavailable = "bot_unavailable"


class EscalationStatus(str, enum.Enum):
    open = "open"
    acknowledged = "acknowledged"
    resolved = "resolved"


class Escalation(Base):
    __tablename__ = "escalations"
    __table_args__ = (Index("ix_escalations_queue", "clinic_id", "status", "opened_at"),)

    id = Column(Integer, primary_key=True)
    clinic_id = Column(ForeignKey("clinics.id", ondelete="CASCADE"), nullable=False)
    thread_id = Column(ForeignKey("threads.id", ondelete="CASCADE"), nullable=False)
    contact_id = Column(ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False)
    reason = Column(_enum(EscalationReason, "escalation_reason"), nullable=False)
    priority = Column(Integer, nullable=False)  # 1 is most urgent
    summary = Column(Text, nullable=False)
    red_flag_rule = Column(String(64))
    transcript = Column(JSON, nullable=False, default=list)
    bot_told_patient = Column(Text, nullable=False, default="")
    status = Column(_enum(EscalationStatus, "escalation_status"), nullable=False,
                    default=EscalationStatus.open)
    opened_at = Column(UTCDateTime, nullable=False, default=utcnow)
    acknowledged_at = Column(UTCDateTime)
    acknowledged_by_id = Column(ForeignKey("staff_members.id"))
    resolved_at = Column(UTCDateTime)
    resolved_by_id = Column(ForeignKey("staff_members.id"))
    alert_count = Column(Integer, nullable=False, default=0)
    # Persisted so an unacknowledged alert is repeated even across a restart.
    next_alert_at = Column(UTCDateTime)
    # Printed in the staff alert ("Reply ACK 7KQ2"): an acknowledgement by text must quote it,
    # so a spoofed sender id cannot silence an escalation by guessing its sequential number.
    ack_code = Column(String(8))

    thread = relationship("Thread")
    contact = relationship("Contact")


class EscalationAlert(Base):
    """Every alert sent to staff and every acknowledgement, for the audit trail."""

    __tablename__ = "escalation_alerts"
    __table_args__ = (Index("ix_escalation_alerts_delivery", "delivery_status",
                            "next_attempt_at"),)

    id = Column(Integer, primary_key=True)
    escalation_id = Column(ForeignKey("escalations.id", ondelete="CASCADE"), nullable=False,
                           index=True)
    staff_id = Column(ForeignKey("staff_members.id"))
    kind = Column(String(32), nullable=False)  # alert, realert, ack, resolve, take_over, ...
    channel = Column(String(32), nullable=False)  # sms, whatsapp, email, webhook, console
    message_id = Column(ForeignKey("messages.id"))
    detail = Column(Text, nullable=False, default="")
    created_at = Column(UTCDateTime, nullable=False, default=utcnow)
    # Email and webhook alerts are sent by the gateway, not the outbox: their own delivery
    # state. Null for SMS/WhatsApp (the Message row has it) and for acknowledgements.
    recipient = Column(String(320))  # an email address; never a webhook URL (a secret)
    delivery_status = Column(String(16))  # pending, sending, sent, failed
    attempts = Column(Integer, nullable=False, default=0, server_default=text("0"))
    next_attempt_at = Column(UTCDateTime)
    sent_at = Column(UTCDateTime)


class JobKind(str, enum.Enum):
    follow_up = "follow_up"  # the patient did not answer the text-back
    reminder = "reminder"  # an appointment is coming up
    rebooking_offer = "rebooking_offer"  # after a no-show or a cancellation


class JobState(str, enum.Enum):
    scheduled = "scheduled"  # due at due_at (perhaps deferred there by the compliance gate)
    sent = "sent"
    dropped = "dropped"  # the gate or the situation ruled it out; last_reason says why
    cancelled = "cancelled"  # the patient answered, booked, opted out, called again, ...


class ScheduledJob(Base):
    """A message Ringback will start itself, at a time: one row, claimed by one gateway once.

    `subject` names what it is about ("call:17", "appointment:42"); with `kind` and `step` it is
    unique, so planning the same job twice (two gateways, a restart) adds nothing."""

    __tablename__ = "scheduled_jobs"
    __table_args__ = (
        UniqueConstraint("kind", "subject", "step"),
        Index("ix_scheduled_jobs_due", "state", "due_at"),
        Index("ix_scheduled_jobs_contact", "contact_id", "state"),
        Index("ix_scheduled_jobs_appointment", "appointment_id", "kind"),
    )

    id = Column(Integer, primary_key=True)
    clinic_id = Column(ForeignKey("clinics.id", ondelete="CASCADE"), nullable=False)
    contact_id = Column(ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False)
    thread_id = Column(ForeignKey("threads.id", ondelete="CASCADE"))
    appointment_id = Column(ForeignKey("appointments.id", ondelete="CASCADE"))
    kind = Column(_enum(JobKind, "job_kind"), nullable=False)
    subject = Column(String(64), nullable=False)
    step = Column(Integer, nullable=False, default=0)
    # When the subject was as planned for (the call's text-back, the appointment's start): a
    # moved appointment makes its old reminders moot.
    subject_at = Column(UTCDateTime, nullable=False)
    due_at = Column(UTCDateTime, nullable=False)
    # Past this the message makes no sense any more (a reminder after the visit).
    expires_at = Column(UTCDateTime, nullable=False)
    state = Column(_enum(JobState, "job_state"), nullable=False, default=JobState.scheduled)
    channel = Column(_enum(Channel, "job_channel"))  # as sent
    message_id = Column(ForeignKey("messages.id", ondelete="SET NULL"))
    last_reason = Column(String(300), nullable=False, default="")
    deferrals = Column(Integer, nullable=False, default=0)
    # The dialogue was told (EXTERNAL_reminder, ...) so the patient's answer is read in context.
    dialogue_told_at = Column(UTCDateTime)
    created_at = Column(UTCDateTime, nullable=False, default=utcnow)
    finished_at = Column(UTCDateTime)

    contact = relationship("Contact")
    clinic = relationship("Clinic")
    thread = relationship("Thread")
    appointment = relationship("Appointment")


class JobDecision(Base):
    """Each thing that happened to a scheduled job (sent, deferred until when, dropped or
    cancelled and why), for the thread's timeline and the clinic's records."""

    __tablename__ = "job_decisions"

    id = Column(Integer, primary_key=True)
    job_id = Column(ForeignKey("scheduled_jobs.id", ondelete="CASCADE"), nullable=False,
                    index=True)
    outcome = Column(String(16), nullable=False)  # sent, deferred, dropped, cancelled
    reason = Column(String(300), nullable=False, default="")
    until = Column(UTCDateTime)
    decided_at = Column(UTCDateTime, nullable=False, default=utcnow)


class FunnelEvent(Base):
    """State changes the clinic measures: missed, texted, replied, booked, escalated, opted out."""

    __tablename__ = "funnel_events"
    __table_args__ = (Index("ix_funnel_clinic_time", "clinic_id", "occurred_at"),)

    id = Column(Integer, primary_key=True)
    clinic_id = Column(ForeignKey("clinics.id", ondelete="CASCADE"), nullable=False)
    kind = Column(String(32), nullable=False)
    contact_id = Column(ForeignKey("contacts.id", ondelete="CASCADE"))
    thread_id = Column(ForeignKey("threads.id", ondelete="CASCADE"))
    detail = Column(JSON, nullable=False, default=dict)
    occurred_at = Column(UTCDateTime, nullable=False, default=utcnow)


class WebhookReplay(Base):
    """Signatures of recently accepted signed webhooks, so a replay is refused."""

    __tablename__ = "webhook_replays"

    signature = Column(String(128), primary_key=True)
    received_at = Column(UTCDateTime, nullable=False, default=utcnow,
                         server_default=text("CURRENT_TIMESTAMP"))


class ConsoleSession(Base):
    """A browser's console session: its cookie holds a random token, this row a keyed hash of it.

    Deleting the row ends the session at once (sign-out, password change); the idle and
    absolute timeouts are read from `last_active_at` and `created_at`.
    """

    __tablename__ = "console_sessions"

    id = Column(Integer, primary_key=True)
    token_hash = Column(String(64), nullable=False, unique=True)
    # Null until someone signs in (the sign-in form's CSRF token lives in a session too).
    staff_id = Column(ForeignKey("staff_members.id", ondelete="CASCADE"), index=True)
    data = Column(JSON, nullable=False, default=dict)  # CSRF token, flash message, fingerprint
    created_at = Column(UTCDateTime, nullable=False)
    last_active_at = Column(UTCDateTime, nullable=False, index=True)


class SignInFailures(Base):
    """Failed console sign-ins per key (a username, a client address, or the two together),
    shared by every gateway process. The key is a keyed hash: people type passwords into the
    username field, and this table must not keep them."""

    __tablename__ = "sign_in_failures"

    key = Column(String(64), primary_key=True)
    failures = Column(Integer, nullable=False)
    last_failure_at = Column(UTCDateTime, nullable=False, index=True)
    # The failure before the last one: the growing delay is measured from it.
    previous_failure_at = Column(UTCDateTime)


class AuditEvent(Base):
    """Who did what to which patient's records, when and from where: one row per console view
    of a thread or escalation, staff reply, take-over, hand-back, acknowledgement, resolution,
    export and erasure. Append-only: the database refuses UPDATE and DELETE (triggers below).

    Ids only, no foreign keys: a row outlives a patient's erasure and never names them (the
    contact id points at the anonymised contact)."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_clinic_time", "clinic_id", "occurred_at"),)

    id = Column(Integer, primary_key=True)
    clinic_id = Column(Integer, nullable=False)
    occurred_at = Column(UTCDateTime, nullable=False, default=utcnow)
    # "staff:12" for a staff member, "cli:<os user>" for the `ringback` command.
    actor = Column(String(120), nullable=False)
    staff_id = Column(Integer)
    action = Column(String(32), nullable=False)  # view_thread, reply, take_over, export, ...
    channel = Column(String(16), nullable=False)  # console, sms, whatsapp, cli
    # The client's IP address for the console, the staff phone for a text, the host for the CLI.
    address = Column(String(120), nullable=False, default="")
    thread_id = Column(Integer)
    escalation_id = Column(Integer)
    contact_id = Column(Integer)
    detail = Column(String(300), nullable=False, default="")


# The same statements run in migration 0013 and after `create_all` (the tests' schemas).
AUDIT_APPEND_ONLY_DDL = {
    "sqlite": [
        "CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events "
        "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END",
        "CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events "
        "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END",
    ],
    "postgresql": [
        "CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger "
        "LANGUAGE plpgsql AS $$ BEGIN "
        "RAISE EXCEPTION 'audit_events is append-only'; END $$",
        "CREATE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE ON audit_events "
        "FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()",
        "CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only()",
    ],
}
for _dialect, _statements in AUDIT_APPEND_ONLY_DDL.items():
    for _statement in _statements:
        event.listen(AuditEvent.__table__, "after_create",
                     DDL(_statement).execute_if(dialect=_dialect))


class TextBackHour(Base):
    """Text-backs sent and refused in one clock hour (UTC), per clinic and for all clinics
    together: the hourly caps count here, so they hold across gateway processes."""

    __tablename__ = "text_back_hours"

    scope = Column(String(32), primary_key=True)  # "all", or "clinic:<id>"
    hour_start = Column(UTCDateTime, primary_key=True)
    texted = Column(Integer, nullable=False, default=0)
    refused = Column(Integer, nullable=False, default=0)
    # Staff (or, for "all", the operator's log) were told this hour that a cap was reached.
    alerted = Column(Boolean, nullable=False, default=False)


__all__ = [
    "Appointment", "AppointmentStatus", "Arrival", "AUDIT_APPEND_ONLY_DDL", "AuditEvent", "Base",
    "Channel", "ChannelPolicy", "Clinic", "Closure", "Consent", "ConsoleAccount", "ConsoleRole",
    "ConsoleSession", "Contact",
    "Direction", "Escalation", "EscalationAlert", "EscalationReason", "EscalationStatus",
    "FunnelEvent", "InboxItem", "InboxState", "JobDecision", "JobKind", "JobState", "Message",
    "MessageStatus", "MissedCall", "MissedCallStatus", "OnCallShift", "OpeningHours", "Patient",
    "Provider", "ProviderHours", "ScheduledJob", "Service", "SignInFailures", "SlotClaim",
    "StaffMember", "TextBackHour", "Thread", "ThreadState", "UTCDateTime", "utcnow",
    "WebhookReplay",
]
