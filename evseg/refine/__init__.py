"""Pseudo-label refinement: SeCo's pixel semantic aggregation (PSA) and connectivity correction (SCC)."""
