"""Workload identity: SPIFFE IDs, the mesh CA, and identity files re-read when they change."""
