"""Training: the dataset snapshot (features joined with labels) and the AutoGluon training job."""
