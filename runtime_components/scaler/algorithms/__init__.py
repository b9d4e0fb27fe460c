"""The three scaling policies as pure functions over explicit state (no clock, no I/O)."""
