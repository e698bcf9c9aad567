"""Observing: probes that read Azure and the app, and the metrics they feed."""
