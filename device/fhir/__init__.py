"""The device's FHIR R4 (4.0.1) server: ``$predict-risk``, RiskAssessment, CDS Hooks, Consent."""
