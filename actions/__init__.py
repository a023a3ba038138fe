"""Rasa custom actions: thin glue from the dialogue to booking's services."""
