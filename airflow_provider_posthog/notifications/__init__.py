"""Notifiers that report what a PostHog task exported."""
