"""`sofamesh`: the command line. `sofamesh ctl ...` talks to the control plane (`ctl.py`),
`sofamesh ca ...` makes a mesh CA and workload certificates (`ca.py`)."""
