"""Performance metrics, acceptance criteria, the validation run and its report."""
