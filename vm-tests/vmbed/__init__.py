"""The VM test bed: network namespaces, QEMU clients, a test image and `netboot serve`.

Kept apart from `tests/support` (different package name) so both directories can be collected
in one pytest run.
"""
