"""The status page in a real browser (chromium via selenium, in the client namespace) and
/metrics scraped with curl, both after real DHCP, TFTP and HTTP traffic from that namespace."""

from __future__ import annotations

import os
import shutil
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_proxy_dhcp import discover, exchange

from testbed.lan import CLIENT_IF, CLIENT_IP, SERVER_IP, Lan, open_lan

pytestmark = pytest.mark.netns

HOSTILE = "<img src=x onerror=alert(1)>"
HOSTILE_PRODUCT = "</td><script>window.__pwned=1</script>"
IMAGE, VERSION = "demo", "2026.12.02"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
# collects script errors from the first line of every page on (console errors come from the log)
ERROR_HOOK = """
window.__errors = [];
window.addEventListener("error", (e) => window.__errors.push(String(e.message)));
window.addEventListener("unhandledrejection", (e) => window.__errors.push(String(e.reason)));
"""


ENTRIES = """
[entries.installer]
title = "Debian 12 installer <b>beta</b>"
kernel = "di/linux"
initrd = ["di/initrd.gz"]

[entries.netbootxyz]
title = "netboot.xyz"
chain = "http://boot.example/menu.ipxe"
"""


@pytest.fixture(scope="module")
def lan(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lan]:
    """The shared LAN, with two `[entries]` beside the published image."""
    config = tmp_path_factory.mktemp("status-config") / "netboot.toml"
    config.write_text(ENTRIES)
    with open_lan(tmp_path_factory.mktemp("lan"), extra=("--config", str(config))) as opened:
        yield opened


def client_mac(lan: Lan) -> str:
    return lan.client_ns.run("cat", f"/sys/class/net/{CLIENT_IF}/address").stdout.strip()


def publish_fake_image(root: Path) -> str:
    """A published version as `netboot image` lays it out (contents do not matter here)."""
    version = root / "images" / IMAGE / "versions" / VERSION
    version.mkdir(parents=True, exist_ok=True)
    (version / "vmlinuz").write_bytes(b"k" * 4096)
    (version / "root.squashfs").write_bytes(b"s" * 4096)
    current = root / "images" / IMAGE / "current"
    if not current.is_symlink():
        current.symlink_to(f"versions/{VERSION}")
    return f"/images/{IMAGE}/versions/{VERSION}/vmlinuz"


def boot_steps(lan: Lan, mac: str, hostname: bytes = b"", manufacturer: str = "") -> None:
    """What a booting client does, from the client namespace: DISCOVER, TFTP, script, kernel."""
    extra = [("hostname", hostname)] if hostname else []
    assert exchange(lan, discover(0, mac=mac, extra=extra)) is not None, lan.serve.tail()
    got = lan.client_ns.run(
        "tftp", SERVER_IP, "-m", "binary", "-c", "get", "ipxe/undionly.kpxe", "/dev/null"
    )
    assert got.returncode == 0, got.stderr
    query = urllib.parse.urlencode(
        {"mac": mac, "platform": "pcbios", "manufacturer": manufacturer, "product": HOSTILE_PRODUCT}
    )
    assert lan.curl(f"/boot.ipxe?{query}", "-f").returncode == 0
    kernel = publish_fake_image(lan.root)
    assert lan.curl(kernel, "-f", "-o", "/dev/null").returncode == 0


def scrape(lan: Lan) -> dict[tuple[str, tuple], float]:
    result = lan.curl("/metrics", "-f")
    assert result.returncode == 0, result.stderr
    samples = {}
    for family in text_string_to_metric_families(result.stdout):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_after_real_traffic(lan: Lan) -> None:
    mac = client_mac(lan)
    boot_steps(lan, mac)
    samples = scrape(lan)

    def value(name: str, **labels: str) -> float:
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    assert value("netboot_dhcp_packets_total", direction="received", type="DISCOVER") >= 1
    assert value("netboot_dhcp_packets_total", direction="sent", type="OFFER") >= 1
    assert value("netboot_dhcp_requests_total", outcome="offers") >= 1
    assert value("netboot_tftp_transfers_total", outcome="completed") >= 1
    ipxe_size = (lan.root / "ipxe" / "undionly.kpxe").stat().st_size
    assert value("netboot_tftp_sent_bytes_total") >= ipxe_size
    assert value("netboot_http_requests_total", kind="script", status="200") >= 1
    assert value("netboot_http_requests_total", kind="kernel", status="200") >= 1
    assert value("netboot_clients", stage="kernel") >= 1
    for step in ("tftp", "script", "kernel"):
        assert value("netboot_boot_step_seconds_count", step=step) >= 1, step
    # a scrape is counted under its own kind once it is answered: the next one shows it
    scrapes = value("netboot_http_requests_total", kind="metrics", status="200")
    again = scrape(lan)
    assert again[("netboot_http_requests_total", (("kind", "metrics"), ("status", "200")))] == (
        scrapes + 1
    )


def test_http_download_under_way_is_listed(lan: Lan) -> None:
    big = lan.root / "big.bin"
    big.write_bytes(os.urandom(32 * 1024 * 1024))
    curl = lan.client_ns.popen(
        "curl", "-s", "--limit-rate", "1M", "-o", "/dev/null", lan.serve.base + "/big.bin"
    )
    try:

        def listed() -> list:
            status = lan.serve.api("/api/status")
            return [t for t in status["transfers"] if t["protocol"] == "http"]

        # the size is known once aiohttp has opened the file and sent the headers
        (download,) = wait_for(
            lambda: [t for t in listed() if t["size"]], what="the download in /api/status"
        )
        assert download["file"] == "big.bin"
        assert download["ip"] == CLIENT_IP
        assert download["size"] == 32 * 1024 * 1024
    finally:
        curl.kill()
        curl.wait()
    wait_for(lambda: not listed(), what="the download to leave the list")


@pytest.fixture
def browser(lan: Lan) -> Iterator[object]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("chromium and chromium-driver are not installed (./bootstrap.sh installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1600,900",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # the browser, its driver and the driver's HTTP connection all live in the client
    # namespace: this thread enters it for the whole test
    with lan.client_ns.entered():
        driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
        try:
            driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": ERROR_HOOK})
            yield driver
        finally:
            driver.quit()


def wait_for(condition, timeout: float = 30.0, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_status_page_shows_a_booting_client_live(lan: Lan, browser, tmp_path: Path) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    driver = browser
    driver.get(lan.serve.base + "/")
    wait_for(lambda: driver.find_element(By.ID, "conn").text == "live", what="the event stream")
    mac = client_mac(lan)

    # the page re-renders on every update: read texts in one script call, never through
    # element references that the next update makes stale
    def texts(selector: str) -> list[str]:
        return driver.execute_script(
            "return [...document.querySelectorAll(arguments[0])].map((e) => e.innerText.trim())",
            selector,
        )

    def row_text() -> str:
        found = texts(f'tr[data-mac="{mac}"]')
        return found[0] if found else ""

    # the page is open: now the client boots (no reload from here on)
    boot_steps(lan, mac, hostname=HOSTILE.encode(), manufacturer=HOSTILE)
    # this boot's hostname and manufacturer, and its kernel step, shown as text...
    wait_for(
        lambda: row_text().count(HOSTILE) == 2 and row_text().endswith("vmlinuz"),
        what="the booting client's row",
    )
    text = row_text()
    assert HOSTILE_PRODUCT in text
    assert f"{IMAGE} {VERSION}" in text
    assert driver.find_elements(By.TAG_NAME, "img") == []  # ...never as markup
    assert driver.find_elements(By.TAG_NAME, "script")[1:] == []
    assert driver.execute_script("return window.__pwned") is None
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert  # noqa: B018 (the property raises when there is no alert)
    for step in ("dhcp-offer", "tftp", "script", "kernel"):
        assert step in text, step
    # a transfer the client never acknowledges: listed under way, then failed in the timeline
    stalled = lan.client_socket(port=40069)
    try:
        stalled.sendto(b"\x00\x01ipxe/undionly.kpxe\x00octet\x00", (SERVER_IP, 69))
        size = (lan.root / "ipxe" / "undionly.kpxe").stat().st_size
        cells = wait_for(lambda: texts("#transfers td"), what="the TFTP transfer")
        assert cells[1:4] == ["tftp", "ipxe/undionly.kpxe", f"0 % (0 of {size} bytes)"]
        assert cells[0] == f"{mac} {CLIENT_IP}"
        wait_for(lambda: "tftp-failed" in row_text(), timeout=60, what="the failed transfer")
        wait_for(lambda: texts("#transfers td") == [], what="the transfer list to empty")
    finally:
        stalled.close()
    failed = texts(f'tr[data-mac="{mac}"] .error')  # the stage and the timeline line
    assert any(line.startswith("tftp-failed") for line in failed), failed
    assert any("tftp-failed ipxe/undionly.kpxe" in line for line in failed), failed
    assert texts("#images td")[:3] == [IMAGE, VERSION, "1"]
    assert texts("#entries tr") == [
        "installer\tDebian 12 installer <b>beta</b>\tlinux\tconfig\tdi/linux",
        "netbootxyz\tnetboot.xyz\tchain\tconfig\thttp://boot.example/menu.ipxe",
    ]
    shot = tmp_path / "status.png"
    driver.save_screenshot(str(shot))
    if os.environ.get("NETBOOT_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["NETBOOT_KEEP_SCREENSHOT"])
    assert shot.stat().st_size > 0
    assert driver.execute_script("return window.__errors") == []
    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []
