"""The VM-specific part of the test bed: QEMU clients, the test and distribution images,
the VM test network, the NFS server and the boot checks. Namespaces, bridges, `netboot serve`
and the kernels come from the shared `testbed` package.
"""
