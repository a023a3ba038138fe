"""Running Ringback: the command line, the process supervisor and the demo."""
