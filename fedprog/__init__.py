"""fedprog."""
