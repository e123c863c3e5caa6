"""Any JSON value, for property tests of code that parses what a stranger sends.

Wrong types, huge numbers, NaN, nesting and missing fields: the shapes a hostile
or careless peer can put where a field of a known type belongs.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st


def json_values(
    *,
    text_size: int = 10,
    key_size: int = 5,
    max_leaves: int = 8,
    integers: st.SearchStrategy[int] | None = None,
    floats: st.SearchStrategy[float] | None = None,
) -> st.SearchStrategy[Any]:
    """Scalars (null, booleans, numbers, short text), and lists and objects of them nested up
    to `max_leaves` leaves; `integers` and `floats` narrow the numbers where a test wants to."""
    scalars = (
        st.none()
        | st.booleans()
        | (integers if integers is not None else st.integers())
        | (floats if floats is not None else st.floats())
        | st.text(max_size=text_size)
    )
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(st.text(max_size=key_size), inner, max_size=3)
        ),
        max_leaves=max_leaves,
    )
