"""Per-site patient consent registry (FHIR Consent), commitments and revocation."""
