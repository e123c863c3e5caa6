"""The web console: static files served by the control plane next to its JSON API.

The console is a client of the same API as `sofamesh ctl` (same tokens, same
roles; no route of its own beyond the files). `ConsoleSite` wraps the API's
dispatcher: `/` is the single page, `/console/...` its ES modules and CSS, read
once from the package data (so `pip install sofamesh` serves them, with no
internet: no CDN, no build step); everything else goes to the API unchanged.
"""

from __future__ import annotations

from sofamesh.control.console.site import ConsoleSite, load_assets

__all__ = ["ConsoleSite", "load_assets"]
