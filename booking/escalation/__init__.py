"""Escalation: handing a thread to a person. Owns the escalation record (open, acknowledged,
resolved), who is on call, the staff alerts and their re-alerts, staff replying by text, and the
hand-off that keeps the bot quiet while a person holds a thread. It uses the outbox and threads
(`messaging/`) and clinic config and hours (`clinics/`, `calls.text_back` for the wording of
opening times); it must not import the web layer (`gateway/`, `console/`), `dialogue/` or
`reports/`, nor Rasa."""
