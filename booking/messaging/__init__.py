"""Messaging: every message in and out, and the threads they belong to. Owns the inbox (each
patient message stored once, handed to the dialogue one at a time), the outbox (each reply sent
once), consent and opt-out keywords, the Twilio REST client and request signatures, phone
numbers, contacts and threads, and the HTTP client for Rasa's API (`rasa_client`: it is used by
both the gateway and the console, so it lives here and not in `gateway/`). It may hand a staff
member's message to `escalation/`; it must not import the web layer (`gateway/`, `console/`),
the dialogue rules (`dialogue/`) or `reports/`, nor Rasa's own packages."""
