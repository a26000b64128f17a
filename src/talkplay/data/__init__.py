"""Datasets: schema, on-disk format, importers, the embedded music world and conversations."""
