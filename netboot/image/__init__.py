"""Building what netboot serves: sources -> overlay -> cleanup -> squashfs -> publish.

`netboot image` turns a chroot, a raw VM disk or the running system into a versioned
squashfs under the served root (see `netboot.layout`); `netboot kernel` extracts the kernel
and initramfs that boot it.
"""
