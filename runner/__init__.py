"""Executes one Zyra command: the catalog, argv building, isolation and capture."""
