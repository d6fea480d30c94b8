"""The mace family: see adapter.py."""
