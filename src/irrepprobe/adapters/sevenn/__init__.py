"""The sevenn family: see adapter.py."""
