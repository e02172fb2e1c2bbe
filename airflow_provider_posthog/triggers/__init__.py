"""Triggers polling PostHog batch exports from the triggerer."""
