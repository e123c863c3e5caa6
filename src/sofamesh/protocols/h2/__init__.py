"""HTTP/2 (h2c) in the mesh: connections and streams over `codecs.h2`, the server, the client pool,
plain HTTP requests over HTTP/2, and `H2Support`.
"""
