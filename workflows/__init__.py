"""Commands that join the pieces: the CLI, the demo, regression checks between adapters."""
