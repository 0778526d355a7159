"""Accounts that log themselves in: the browser login, session bundles, and the per-instance login state."""
