"""Example services."""
