"""Thin edges: the HTTP API and, later, the other channels' adapters."""
