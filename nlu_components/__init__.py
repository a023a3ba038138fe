"""Custom Rasa NLU components: the emergency safety net that runs after the intent classifier."""
