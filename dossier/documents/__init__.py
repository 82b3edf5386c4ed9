"""The dossier's documents: each module here exposes ``SPEC = DocumentSpec(...)`` (dossier.spec)."""
