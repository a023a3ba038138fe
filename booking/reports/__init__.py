"""Reports: what a clinic measures, read from the database: the recovery funnel (calls missed,
texted, answered, replied, booked) and, next, the queries a dashboard needs. Read-only over
`models`; it must not import any other room (a report never sends, books or escalates), nor
Rasa."""
