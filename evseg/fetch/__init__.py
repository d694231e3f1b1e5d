"""Fetching the real datasets and weights: resumable verified downloads, safe unpacking, the manifest."""
