"""Dramatiq actors, the run executor, and the billing job types."""
