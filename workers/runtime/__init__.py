"""The worker runtime: Dramatiq actors, the run executor, finalization, heartbeats and outage handling.

It knows no job type by name: it runs whatever the registry holds.
"""
