"""A simulated Twilio and phone network: for the demo, for people playing the patient, for tests."""
