"""The certified device at run time: model artifact, input spec, scoring, registry, FHIR server."""
