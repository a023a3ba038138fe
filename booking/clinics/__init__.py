"""Clinics: what a clinic is and when it is open. Owns the clinic configuration files (their
schema and loading), looking a clinic up by its number or slug, matching a service by name,
opening hours, and who may sign in to the console for which clinic in which role (`accounts`:
log-ins and memberships). Everything else reads it; it may use `messaging.phones` to normalise
numbers and `scheduling/` for adapter settings, and must not import `calls/`, `dialogue/`,
`escalation/`, `reports/`, the web layer (`gateway/`, `console/`), nor Rasa."""
