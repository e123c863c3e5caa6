"""Governance rules: each a frozen config, a pure state machine taking `now`, and a thin filter."""
