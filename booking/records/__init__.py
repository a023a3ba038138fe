"""Records: what Ringback holds about patients and who touched it. Owns the audit trail (every
view, reply, take-over, hand-back, acknowledgement, export and erasure, append-only), the
retention purge of old message bodies and transcripts, a patient's export and erasure, and the
reach into Rasa's tracker store those need.

It reads clinic config (`clinics/`) and the shared modules; it must not import the rooms that
call it (`escalation/`, the web layer `gateway/` and `console/`), nor `calls/`, `messaging/`,
`dialogue/`, `outreach/`, `reports/`, nor Rasa."""
