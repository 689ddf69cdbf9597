"""Route modules, one per resource; handlers stay thin and call the data functions."""
