"""Dubbo 2 in the mesh: listeners, client, pool, probe. The codec is `sofamesh.codecs.dubbo`."""
