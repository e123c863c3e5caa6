"""SOFA Bolt in the mesh: frames <-> neutral model, the multiplexed client and pool, the server,
and `BoltSupport`. The sans-IO codec is `codecs.bolt`; Hessian 2 is `codecs.hessian2`.
"""
