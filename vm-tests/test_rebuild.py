"""Publishing a new version while a client runs: the running client keeps reading its own
version's files, and a client that boots afterwards gets the new one."""

from __future__ import annotations

from vmbed.checks import check_image_boot, check_record, wait_for_marker
from vmbed.config import VmServe
from vmbed.image import TestImage
from vmbed.run import BOOT_TIMEOUT, HOLD_MAC, VmRun

STILL = r"NBTEST-STILL t=\d+ stamp=(\w+)"


def test_publish_while_a_client_runs(
    vm: VmRun, proxy_server: VmServe, test_image: TestImage
) -> None:
    old = test_image.current()
    holder = vm.boot(proxy_server, "bios", "virtio-net-pci", mac=HOLD_MAC, name="holder")
    marker = wait_for_marker(holder, BOOT_TIMEOUT)
    assert check_image_boot(marker, test_image, HOLD_MAC).version == old.version
    assert "nbtest.hold" in marker.cmdline, "the per-client kernel_params did not reach the client"
    first = holder.wait_for(STILL, 30, after=marker.offset)
    assert first.group(1) == old.stamp

    new = test_image.republish()
    assert new.version != old.version and new.stamp != old.stamp
    assert test_image.current().version == new.version

    # the running client re-reads its stamp from its root (caches dropped) after the publish
    after_publish = len(holder.text())
    still = holder.wait_for(STILL, 30, after=after_publish)
    assert still.group(1) == old.stamp, "the running client sees another version's files"

    second = vm.boot(proxy_server, "bios", "virtio-net-pci", name="after-publish")
    marker2 = wait_for_marker(second, BOOT_TIMEOUT)
    booted2 = check_image_boot(marker2, test_image, second.spec.mac)
    assert booted2.version == new.version, "a client booting after the publish got the old one"
    assert marker2.stamp == new.stamp
    assert second.wait_exit(60) == 0

    # both ran side by side: the first one still has its old files
    assert holder.proc is not None and holder.proc.poll() is None, "the running client died"
    still = holder.wait_for(STILL, 30, after=len(holder.text()))
    assert still.group(1) == old.stamp

    check_record(proxy_server.client(HOLD_MAC), HOLD_MAC, tftp=False, version=old)
    check_record(proxy_server.client(second.spec.mac), second.spec.mac, tftp=False, version=new)
