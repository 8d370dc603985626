"""Packaged with the distribution as data (see pyproject.toml); this file only makes the folder importable."""
