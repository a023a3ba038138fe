"""Speed benchmarks: `make bench` runs each module's run() and prints its numbers."""
