"""Transparent interception: the init rules, original destinations, virtual IPs, the DNS proxy.

- `rules`: the iptables rules `sofamesh-init` installs and removes (pure: argument lists).
- `init`: the `sofamesh-init` command (`python -m sofamesh.intercept`).
- `original`: a redirected connection's original destination (`SO_ORIGINAL_DST`).
- `vips`: a stable virtual IP per mesh service; `names`: destination -> service.
- `dns`: the DNS proxy answering mesh names with virtual IPs.
- `transparent`: the sidecar's transparent listeners (sniff, map, hand over or relay).
"""
