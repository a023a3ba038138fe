"""Reports: what a clinic measures, read from the database.

1. `periods`: a period in the clinic's own days, and the one of the same length before it.
2. `funnel`: how often each funnel event happened (missed, texted, replied, offered, booked...).
3. `metrics`: every figure of the dashboard for a period, and the charts' series.
4. `exports`: the period's missed calls and Ringback's bookings as rows (CSV).
5. `summary`: the headline figures as text (`ringback funnel`, `make demo`).

Read-only over `models`; it must not import any other room (a report never sends, books or
escalates), nor Rasa."""
