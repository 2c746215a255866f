# Test entry points. Tests that need root (network namespaces, tap devices, ports < 1024,
# mounts; marked netns, vm or root) are skipped with the reason when run as another user.
#   make test          the whole suite, as CI runs it (tests/ and vm-tests/), as root
#   make unit-test     only the tests that need no root, no namespaces and no QEMU
#   make vm-test       only the QEMU network-boot tests (a few minutes on 2 cores)
#   make vm-test-full  the QEMU tests plus the real Debian image and the LTSP site (slow; not in CI)
#   make fuzz          bench/fuzz.py: 100,000 mutated cases per protocol against netboot serve
#                      (FUZZ_ARGS='--cases 1000'); figures in docs/security.md
# Extra pytest options: make vm-test ARGS='-k uefi -x'

PYTHON ?= .venv/bin/python
PYTEST = $(PYTHON) -m pytest -p no:cacheprovider
ARGS ?=
FUZZ_ARGS ?= --new-macs 100000 --big-clients 5000

.PHONY: test unit-test vm-test vm-test-full fuzz

test:
	$(PYTEST) tests vm-tests $(ARGS)

unit-test:
	$(PYTEST) -m "not netns and not vm and not slow and not root" tests $(ARGS)

vm-test:
	$(PYTEST) vm-tests $(ARGS)

vm-test-full:
	$(PYTEST) vm-tests --vm-full $(ARGS)

fuzz:
	$(PYTHON) bench/fuzz.py $(FUZZ_ARGS)
