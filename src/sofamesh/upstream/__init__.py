"""The concrete level: a service resolved to endpoints, their health, the balancer that picks one.

Governance sits above this package and may import it; nothing here imports governance.
"""
