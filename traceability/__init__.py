"""traceability."""
