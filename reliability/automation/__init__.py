"""Runs that happen by themselves: which assets build automatically, and the sensors that decide it."""
