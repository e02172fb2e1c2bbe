"""Developer scripts that run from a clone (``make demo``); not part of the installed package."""
