"""``lingma-gateway doctor``: what an operator would otherwise check by hand, one verdict and one fix per check.

It lives beside the sidecar because it looks at what the sidecar owns (the binary, the data dir, the socket,
the instances' login state); a running gateway is asked through the sidecar socket, never through HTTP routes.
"""
