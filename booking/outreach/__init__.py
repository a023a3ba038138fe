"""Outreach: the messages Ringback starts itself — scheduled follow-ups after a text-back,
appointment reminders, rebooking offers — and the compliance gate every one of them passes
before it may be sent (`gate`: quiet hours in the recipient's local time, state laws, frequency
caps and body rules, read from data/outreach_rules.yml). Replies to a patient's own message and
the text-back right after their call are not outreach.

Jobs are rows (`models.ScheduledJob`), planned from what the database holds (`planner`) and run
by any gateway process, each once (`runner`); `wording` says what they say. `jobs` is the part
other rooms call ("the patient replied: cancel their follow-ups"); it imports only the models.

It may import `clinics/`, `messaging/`, `calls/` (the text-back's wording and channel choice),
the dialogue's wording of a time and of whose appointment it is (as the confirmation wrote
them),
`scheduling/` and the shared modules; it must not import `escalation/`, `reports/`, the web
layer (`gateway/`, `console/`), nor Rasa."""
