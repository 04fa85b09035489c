"""Actions transform a model and return a new one; they never measure and never modify their input."""
