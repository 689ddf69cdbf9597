"""The beat service: the only process that turns time into runs."""
