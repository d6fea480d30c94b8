"""The e3nn family: see adapter.py."""
