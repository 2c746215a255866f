"""The test bed shared by tests/, vm-tests/ and bench/: network namespaces, veth links and
bridges, the LAN fixtures, `netboot serve` as a process and the cached Debian kernels.

`testbed.plugin` is the pytest side (fixtures, and skipping root-only tests for other users).
"""
