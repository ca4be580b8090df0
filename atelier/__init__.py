"""Atelier CNN."""
