"""Billing Scheduler core: jobs, runs, lifecycle, cron, API and page — knows no job type by name."""
