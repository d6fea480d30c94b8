"""The irrepprobe family: see adapter.py."""
