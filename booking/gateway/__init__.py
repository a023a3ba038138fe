"""Gateway: the HTTP front door (FastAPI). Owns the webhooks (Twilio Voice, other phone
systems' missed-call hook, SMS and WhatsApp, delivery reports), answering them fast and doing
the rest in batches afterwards, and the app that mounts the staff console. It is the room that
wires the others together, so it may import any of them, but it must not import `dialogue/` (the
dialogue runs in Rasa's action server, not here) or `reports/`, nor Rasa: it calls Rasa over
HTTP (`messaging.rasa_client`). Nothing imports it but the console, which it mounts and which
shares its `context`."""
