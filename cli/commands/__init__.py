"""The admin commands of ``scheduler``, one module per noun: jobs, runs, keys, job types."""
