"""The HTTP gateway: Twilio Voice, other phone systems' webhooks, message status, staff console."""
