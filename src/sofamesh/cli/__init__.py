"""`sofamesh`: the command line. `sofamesh ctl ...` talks to the control plane (`ctl.py`)."""
