"""Ringback's domain: clinics, contacts, threads, messages, missed calls, appointments, escalations."""
