"""Meters measure a model and never change it: FLOPs, parameters, latency."""
