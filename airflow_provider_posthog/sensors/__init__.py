"""Sensors waiting on PostHog batch exports."""
