"""The technical file: one module per document, a shared PDF style, and the manifest."""
