"""Fine-Tuning Lab library."""
