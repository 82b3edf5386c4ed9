"""Requirements, hazards and risk controls, the pytest link, trace matrix, SOUP and SBOM."""
