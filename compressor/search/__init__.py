"""The search: an Optuna study over compression plans, scored by the reward."""
