"""Extra links to PostHog's UI."""
