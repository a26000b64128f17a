"""Training: data, losses and the loop."""
