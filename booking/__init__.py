"""Ringback's domain, framework-free, in rooms by capability: `calls/`, `messaging/`,
`dialogue/`, `escalation/`, `clinics/`, `scheduling/`, `reports/`, with the web layer in
`gateway/` and `console/`; `models`, `db`, `settings` and `migrate` are shared by all and import
no room. Nothing in `booking/` imports Rasa or the actions. See docs/architecture.md."""
