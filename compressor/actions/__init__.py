"""Actions transform a model and return a new one.

They never measure and never modify their input.
"""
