"""The nequip family: see adapter.py."""
