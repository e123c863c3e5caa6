"""Every kind of rule, in the order /stats lists them: the one place a new kind is registered.

Each declaration (`RuleKind`) sits at the end of the kind's filter module; the
state holder (`filters/state.py`) and the chain composer (`compose.py`)
iterate over this tuple and name no kind themselves.
"""

from __future__ import annotations

from sofamesh.governance.filters import (
    auth,
    breaker,
    degrade,
    fault,
    flow,
    hotparam,
    limits,
    route,
)
from sofamesh.governance.kind import RuleKind

KINDS: tuple[RuleKind, ...] = (
    route.KIND,  # routes and load_balancing
    breaker.KIND,
    flow.KIND,  # rate_limits
    hotparam.KIND,
    fault.KIND,
    auth.KIND,
    degrade.KIND,  # fallbacks
    limits.KIND,  # resource_limits
)
