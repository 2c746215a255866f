"""A QEMU client on another segment boots through a DHCP relay (isc-dhcp-relay in a router
namespace): proxy mode (addresses from the site's DHCP server, boot answers from netboot's
proxyDHCP sent back to the relay, port 4011 and HTTP across the router) and full DHCP mode
(the address from netboot's pool for the relayed subnet)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from vmbed.checks import check_image_boot, wait_for_marker
from vmbed.config import VmServe, running, write_config
from vmbed.image import TestImage
from vmbed.relay import RelayedSegment, relayed_network
from vmbed.run import BOOT_TIMEOUT, IMAGE_NAME, SERIAL_CONSOLE, VmRun


@pytest.fixture(scope="module", params=["proxy", "full"])
def relayed_server(
    request: pytest.FixtureRequest, vm_workdir: Path, test_image: TestImage
) -> Iterator[VmServe]:
    mode = request.param
    with relayed_network(vm_workdir / f"lan-relay-{mode}", foreign_dhcp=mode == "proxy") as seg:
        extra = ""
        if mode == "full":
            net = seg.server_net
            extra = (
                f'\n[dhcp]\nrange_start = "{net.pool[0]}"\nrange_end = "{net.pool[1]}"\n'
                f'lease_file = "{seg.workdir / "leases.json"}"\n'
                f'[dhcp.subnets."{seg.subnet}.0/24"]\n'
                f'range_start = "{seg.subnet}.100"\nrange_end = "{seg.subnet}.199"\n'
                f'router = "{seg.gateway}"\n'
            )
        config = write_config(seg.workdir / "netboot.toml", default_image=IMAGE_NAME,
                              kernel_params=SERIAL_CONSOLE, extra=extra)  # fmt: skip
        server = VmServe(seg, test_image.root, config, seg.workdir / "server.log", mode)  # type: ignore[arg-type]
        with running(server):
            yield server


def test_bios_client_boots_through_the_relay(
    vm: VmRun, relayed_server: VmServe, test_image: TestImage
) -> None:
    segment: RelayedSegment = relayed_server.net  # type: ignore[assignment]
    client = vm.boot(relayed_server, "bios", "virtio-net-pci")
    vm.logs["dhcrelay.log"] = segment.relay.log
    mac = client.spec.mac
    marker = wait_for_marker(client, BOOT_TIMEOUT)
    booted = check_image_boot(marker, test_image, mac)
    assert booted.version == test_image.current().version
    assert client.wait_exit(60) == 0

    record = relayed_server.client(mac)
    answers = [e for e in record["events"] if e["kind"] in ("dhcp-offer", "proxy-ack")]
    if relayed_server.net.foreign_dhcp is False:
        assert "dhcp-ack" in [e["kind"] for e in record["events"]], "netboot did not lease"
    assert answers and answers[0]["relay"] == segment.gateway, answers
    assert record["ip"].startswith(segment.subnet + "."), record["ip"]
    assert f"Forwarded BOOTREPLY for {mac}" in segment.relay.text()
