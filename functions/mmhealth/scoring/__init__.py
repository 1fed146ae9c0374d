"""The scoring stage: the newest trained model applied to each run's dataset snapshot (features.predictions)."""
