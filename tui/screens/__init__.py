"""Screens pushed over the stepper (help)."""
