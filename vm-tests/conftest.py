"""Fixtures for the VM tests: one test LAN, one image and one `netboot serve` per session.

Every test here is marked `vm` and `netns`: run by a user other than root it is skipped
(`testbed.plugin`).

Every boot has a timeout; a failed test leaves its consoles, the server log and the client
records under test-artifacts/vm/<test-name>/ and prints their tails.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from vmbed.config import VmServe, full_dhcp_section, running, write_config
from vmbed.image import TestImage
from vmbed.network import TestNetwork, network
from vmbed.run import (
    DISTRO_IMAGE_NAME,
    DISTRO_MAC,
    E1000_MACS,
    GENERIC_IMAGE_NAME,
    HOLD_MAC,
    HOLD_SECONDS,
    IMAGE_NAME,
    INSTALLER_DIR,
    INSTALLER_ENTRY,
    INSTALLER_MAC,
    SERIAL_CONSOLE,
    VmRun,
)

from testbed.kernel import cloud_kernel, generic_kernel

pytest_plugins = ["testbed.plugin"]

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--vm-full",
        action="store_true",
        default=False,
        help="also run the slow real-distribution boot (make vm-test-full)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "vm_full: the real-distribution boot (--vm-full)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = HERE
    run_full = config.getoption("--vm-full") or os.environ.get("NETBOOT_VM_FULL") == "1"
    for item in items:
        if here not in Path(str(item.fspath)).parents:
            continue
        item.add_marker(pytest.mark.vm)
        item.add_marker(pytest.mark.netns)
        if item.get_closest_marker("vm_full") and not run_full:
            item.add_marker(
                pytest.mark.skip(
                    reason="slow real-distribution boot: run with `make vm-test-full` (--vm-full)"
                )
            )


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    setattr(item, f"vm_report_{report.when}", report)
    return report


def _require_tools() -> None:
    for tool in ("qemu-system-x86_64", "dnsmasq", "ip", "curl", "unsquashfs"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"vm-tests need {tool} (run ./bootstrap.sh setup)")


@pytest.fixture(scope="session")
def vm_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _require_tools()
    return tmp_path_factory.mktemp("vm")


@pytest.fixture(scope="session")
def test_image(vm_workdir: Path) -> TestImage:
    """The tiny busybox image, built once with the real `netboot image`."""
    kernel = cloud_kernel()
    image = TestImage(
        vm_workdir / "root", vm_workdir / "base", IMAGE_NAME, vm_workdir / "image-build.log"
    )
    image.root.mkdir()
    image.build(kernel.root, kernel.version)
    return image


@pytest.fixture(scope="session")
def generic_image(vm_workdir: Path, test_image: TestImage) -> TestImage:
    """The same image on Debian's generic kernel (trimmed), for the e1000 clients."""
    kernel = generic_kernel()
    image = TestImage(test_image.root, test_image.base_dir, GENERIC_IMAGE_NAME,
                      test_image.log)  # fmt: skip
    image.build(kernel.root, kernel.version)
    return image


@pytest.fixture(scope="session")
def proxy_lan(vm_workdir: Path) -> Iterator[TestNetwork]:
    """The LAN with the site's DHCP server (dnsmasq, addresses only)."""
    with network(vm_workdir / "lan-proxy", foreign_dhcp=True) as net:
        yield net


@pytest.fixture(scope="session")
def root_password_hash() -> str:
    """A SHA-512 crypt hash of a random password: the `[clients] root_password_hash`."""
    return subprocess.run(
        ["openssl", "passwd", "-6", "-salt", secrets.token_hex(8), secrets.token_hex(12)],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


@pytest.fixture(scope="session")
def proxy_server(
    proxy_lan: TestNetwork, test_image: TestImage, root_password_hash: str
) -> Iterator[VmServe]:
    """`netboot serve --dhcp proxy` for the whole session; it must stop cleanly on SIGTERM.
    Beside the images it has one config entry: the Debian installer, copied under the root."""
    workdir = proxy_lan.workdir
    installer = test_image.root / "di"
    installer.mkdir(exist_ok=True)
    for name in ("linux", "initrd.gz"):
        shutil.copyfile(INSTALLER_DIR / name, installer / name)
    config = write_config(
        workdir / "netboot.toml",
        default_image=IMAGE_NAME,
        kernel_params=SERIAL_CONSOLE,
        clients={
            HOLD_MAC: {"kernel_params": f"nbtest.hold={HOLD_SECONDS}"},
            **{mac: {"image": GENERIC_IMAGE_NAME} for mac in E1000_MACS.values()},
            DISTRO_MAC: {"image": DISTRO_IMAGE_NAME},
            INSTALLER_MAC: {"image": INSTALLER_ENTRY},
        },
        client_defaults={"root_password_hash": root_password_hash},
        extra=(
            f"\n[entries.{INSTALLER_ENTRY}]\n"
            'title = "Debian 12 installer"\nkernel = "di/linux"\n'
            'initrd = ["di/initrd.gz"]\ncmdline = "priority=high"\n'
        ),
    )
    with running(VmServe(proxy_lan, test_image.root, config, workdir / "server.log")) as server:
        yield server


@pytest.fixture(scope="session")
def full_server(vm_workdir: Path, test_image: TestImage) -> Iterator[VmServe]:
    """`netboot serve --dhcp full` on a second LAN with no site DHCP server (full DHCP and
    HTTP Boot tests); it must stop cleanly on SIGTERM."""
    with network(vm_workdir / "lan-full", foreign_dhcp=False) as net:
        config = write_config(
            net.workdir / "netboot.toml",
            default_image=IMAGE_NAME,
            kernel_params=SERIAL_CONSOLE,
            extra=full_dhcp_section(net),
        )
        server = VmServe(net, test_image.root, config, net.workdir / "server.log", "full")
        with running(server):
            yield server


@pytest.fixture
def vm(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VmRun]:
    run = VmRun(tmp_path)
    try:
        yield run
    finally:
        call = getattr(request.node, "vm_report_call", None)
        setup = getattr(request.node, "vm_report_setup", None)
        failed = (call is None or call.failed) and not (call is None and setup and setup.skipped)
        run.finish(failed, request.node.nodeid)
