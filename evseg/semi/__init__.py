"""Semi-supervised retraining on the refined pseudo-labels (UniMatch)."""
