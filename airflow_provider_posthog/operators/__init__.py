"""Operators for PostHog batch exports."""
