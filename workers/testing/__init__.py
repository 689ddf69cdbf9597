"""Kits for testing job types: the conformance kit."""
