"""Placeholder until the Inspect page lands: loads the default checkpoint and shows it."""
