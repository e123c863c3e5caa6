"""HTTP/1.1 in the mesh: the HTTP <-> neutral mapping, the server, the client pool, the listeners.

`mapping.py` is HTTP semantics (shared with HTTP/2's plain requests), `server.py`,
`pool.py` and `conn.py` the HTTP/1.1 transport over `codecs.http1`, and
`support.py` the listener handlers and `HttpSupport`.
"""
