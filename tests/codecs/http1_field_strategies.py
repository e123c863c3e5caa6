"""Hypothesis strategies for HTTP/1.1 field lines, shared by the relayed-message differentials."""

from __future__ import annotations

from hypothesis import strategies as st

NAME = st.text(alphabet="abcdeXYZ019-_.!~*'|`^#$%&+", min_size=1, max_size=8)
VALUE = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"),
    max_size=12,
).map(lambda v: v.strip(" "))
CONNECTION = st.sampled_from(["keep-alive", "Keep-Alive", "close", "CLOSE", "close, x", "x-a", ""])
OWS = st.sampled_from(["", " ", "  ", "\t", " \t"])
