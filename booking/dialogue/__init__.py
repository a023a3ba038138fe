"""Dialogue: the rules of a conversation that the Rasa actions (`actions/`) call, as plain
functions: which service and clinician the patient means, which times to offer and how to word
them, reading a pick or a wish ("Thursday after 5"), cues such as "no thanks" or "anything
later?", changing and cancelling appointments, the FAQ answers, the patient details still
needed and who an appointment is for (a family on one phone). Text and rows in, text and
decisions out; it reads `clinics/` and `scheduling/` and must not import `messaging/`,
`calls/`, `escalation/`, `reports/`, the web layer (`gateway/`, `console/`), the actions, nor
Rasa."""
