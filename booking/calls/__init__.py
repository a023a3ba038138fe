"""Calls: a missed call becomes a text-back. Owns recording each missed call once, deciding
whether and how to text the caller back (opt-outs, recent texts, channel, opening hours) and the
text-back's wording. It writes to the outbox and the thread (`messaging/`) and reads clinics
(`clinics/`); it must not import the web layer (`gateway/`, `console/`), the dialogue rules
(`dialogue/`), `escalation/` or `reports/`, nor Rasa."""
