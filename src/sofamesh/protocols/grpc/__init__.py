"""gRPC in the mesh: stream-by-stream proxying over the HTTP/2 slice, and `GrpcSupport`.

The wire layer (message framing, `grpc-timeout`, status codes) is sans-IO, in `codecs/grpc.py`
and `codecs/grpc_heads.py` (request and response heads).
"""
