# Test entry points; every target runs as root (network namespaces, tap devices, ports < 1024).
#   make test          the whole suite, as CI runs it (tests/ and vm-tests/)
#   make vm-test       only the QEMU network-boot tests (a few minutes on 2 cores)
#   make vm-test-full  the QEMU tests plus the real Debian image (debootstrap, slow; not in CI)
# Extra pytest options: make vm-test ARGS='-k uefi -x'

PYTHON ?= .venv/bin/python
PYTEST = $(PYTHON) -m pytest -p no:cacheprovider
ARGS ?=

.PHONY: test vm-test vm-test-full

test:
	$(PYTEST) tests vm-tests $(ARGS)

vm-test:
	$(PYTEST) vm-tests $(ARGS)

vm-test-full:
	$(PYTEST) vm-tests --vm-full $(ARGS)
