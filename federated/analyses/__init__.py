"""The coordinator's analyses over the sites: discovery, Cox, Kaplan–Meier, the study runner."""
