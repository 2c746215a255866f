"""BootPolicy: the one place that answers what a client boots.

Constructed once per server with the config, the address clients reach us at and the HTTP
port really bound (80 or the fallback), it owns every URL a client is handed. The DHCP
servers ask it for a boot answer, `/boot.ipxe` and `netboot ipxe` for a menu, `/clients/MAC`
for settings; none of them builds a URL or reads `[boot]` or `[clients]` itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

from netboot.boot import entries, grub, ltsp_ipxe, pxe, sealed
from netboot.boot.api import ANSWER_DEADLINE, ApiBoot, ApiBooter, ApiRefusal, proxied_link
from netboot.boot.arch import ARCH_EFI_X64_HTTP
from netboot.boot.facts import ClientFacts
from netboot.boot.menu import BootEntry, BootMenu
from netboot.config import Config

log = logging.getLogger("netboot.boot")


class BootPolicy:
    """Maps what a client told us (`ClientFacts`) to what it boots."""

    def __init__(self, config: Config, server_ip: str, http_port: int) -> None:
        self.config = config
        self.server_ip = server_ip
        self.http_port = http_port
        self._http_boot_noted = False
        # API mode: the boot API decides, not the images and entries
        self.api = ApiBooter(config.boot.api) if config.boot.api else None

    # --- where clients reach us -----------------------------------------------------------

    @property
    def http_base(self) -> str:
        port = "" if self.http_port == 80 else f":{self.http_port}"
        return f"http://{self.server_ip}{port}"

    @property
    def script_url(self) -> str:
        return f"{self.http_base}/boot.ipxe"

    @property
    def nfs_server(self) -> str:
        """The address NFS clients mount from: `boot.nfs_server`, else this server."""
        return self.config.boot.nfs_server or self.server_ip

    # --- DHCP -----------------------------------------------------------------------------

    def needs_api(self, facts: ClientFacts) -> bool:
        """API mode and nothing known about this machine yet: `ask_api` before answering."""
        return self.api is not None and self.api.cached(facts.mac) is None

    async def ask_api(self, facts: ClientFacts) -> ApiBoot | ApiRefusal:
        """Ask the boot API about this machine (the result is cached for the next packets)."""
        assert self.api is not None
        return await self.api.ask(facts.mac, facts.arch)

    async def settle_api(self, facts: ClientFacts, deadline: float = ANSWER_DEADLINE) -> None:
        """API mode: ask about an unknown machine, waiting at most `deadline` seconds (a
        later result still fills the cache for the client's next packet)."""
        if self.needs_api(facts):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ask_api(facts), deadline)

    def answer_is_per_client(self, mac: str) -> bool:
        """Whether this MAC's DHCP answer may differ from other clients' of the same kind:
        it has a `[clients]` section of its own, or API mode has not claimed it (yet)."""
        if mac.lower() in self.config.clients.by_mac:
            return True
        return self.api is not None and not isinstance(self.api.cached(mac), ApiBoot)

    def pxe_answer(self, facts: ClientFacts) -> pxe.PxeAnswer | pxe.NoAnswer:
        """The boot file (or, for iPXE, the script URL) a DHCP reply names; in API mode
        only for a machine the API has claimed."""
        if self.api is not None:
            decided = self.api.cached(facts.mac)
            if decided is None:
                return pxe.NoAnswer("waiting for the boot API")
            if isinstance(decided, ApiRefusal):
                return pxe.NoAnswer(decided.reason)
        loader = self.loader(facts.mac)
        http_boot = facts.http_client or facts.arch == ARCH_EFI_X64_HTTP
        if loader == "grub" and http_boot and not facts.ipxe and not self._http_boot_noted:
            self._http_boot_noted = True
            log.info(
                "loader grub: UEFI HTTP Boot clients get iPXE over HTTP instead (Debian 12's "
                "signed GRUB cannot read its config over HTTP; docs/secure-boot.md)"
            )
        return pxe.pxe_answer(
            facts,
            ipxe=self.config.ipxe,
            tftp_root=self.config.tftp_root,
            http_base=self.http_base,
            script_url=self.script_url,
            loader=loader,
        )

    def api_file(self, name: str) -> str | None:
        """The URL behind a proxied file name (`/_/file?name=`), or None: not one this
        process handed out, or API mode or its proxy is off."""
        if self.api is None or not self.config.boot.api_proxy:
            return None
        return sealed.unseal(name)

    # --- TFTP -------------------------------------------------------------------------------

    def tftp_file(self, path: str) -> bytes | None:
        """A generated TFTP file (GRUB's configs), or None: the TFTP server then serves the
        file of its root. Reads the served root: call it off the event loop."""
        return grub.virtual_file(path, self.grub_menu)

    def grub_menu(self, mac: str) -> BootMenu:
        """The menu of a client running GRUB (a UEFI machine; shim booted it)."""
        return self.menu(ClientFacts(mac, platform="efi"))

    # --- what a client boots ----------------------------------------------------------------

    def client_settings(self, mac: str) -> dict[str, Any]:
        """The `[clients]` defaults overlaid with this MAC's section."""
        return self.config.client_settings(mac)

    def transfer(self, mac: str | None) -> str:
        """How this client's HTTP-method image travels: its `[clients]` transfer, else
        `boot.transfer` (http or multicast)."""
        own = self.client_settings(mac).get("transfer") if mac else ""
        return own or self.config.boot.transfer

    def entries(self, mac: str | None = None) -> list[BootEntry]:
        """Every entry: the served root's images, the config's `[entries]`, the LTSP tree in
        compat mode, for this client when `mac` is given (file I/O). A status page lists
        these too."""
        found = entries.image_entries(
            self.config.root,
            self.config.boot,
            base=self.http_base,
            nfs_server=self.nfs_server,
            transfer=self.transfer(mac),
        )
        found += entries.config_entries(self.config.entries)
        if self.config.server.ltsp_compat:
            found += entries.ltsp_entries(self.config.server, self.config.boot, self.nfs_server)
        return found

    def loader(self, mac: str) -> str:
        """The boot loader of UEFI PXE clients ("ipxe" or "grub"): the client's `[clients]`
        loader, else `boot.loader`."""
        return self.client_settings(mac).get("loader") or self.config.boot.loader

    def ltsp_client(self, mac: str) -> ltsp_ipxe.LtspClient:
        """Compat mode: this client's section of the LTSP site's `ltsp.ipxe` (file I/O)."""
        if not self.config.server.ltsp_compat:
            return ltsp_ipxe.LtspClient()
        path = Path(self.config.server.ltsp_tftp_root) / "ltsp.ipxe"
        return ltsp_ipxe.read_client(path, mac)

    def kernel_params(self, mac: str) -> str:
        """Extra kernel parameters: the site-wide ones, the client's in `ltsp.ipxe` (compat
        mode), then the client's `[clients]` ones."""
        own = self.client_settings(mac).get("kernel_params", "")
        ltsp = self.ltsp_client(mac).kernel_params
        return " ".join(p for p in (self.config.boot.kernel_params, ltsp, own) if p)

    def default_entry(self, mac: str, choices: list[BootEntry]) -> BootEntry | None:
        """The client's `[clients]` image, else its `ltsp.ipxe` image (compat mode), else
        `boot.default_image` (an image's or an entry's name); the first entry when the one
        named is not there; None when there is nothing to boot."""
        ltsp = ltsp_ipxe.entry_name(self.ltsp_client(mac).image, {e.name for e in choices})
        wanted = self.client_settings(mac).get("image") or ltsp or self.config.boot.default_image
        return next((e for e in choices if e.name == wanted), choices[0] if choices else None)

    def _api_menu(self, facts: ClientFacts) -> BootMenu:
        """API mode: the API's kernel as the only entry, booted at once (nothing when the
        API refused the machine: the script then boots the local disk)."""
        assert self.api is not None
        decided = self.api.cached(facts.mac)
        link = proxied_link(self.http_base) if self.config.boot.api_proxy else str
        entry = decided.entry(link) if isinstance(decided, ApiBoot) else None
        return BootMenu(facts, (entry,) if entry else (), entry, 0, "", self.http_base,
                        self.server_ip)  # fmt: skip

    def _menu_timeout(self, mac: str) -> int:
        """The client's `ltsp.ipxe` menu timeout (compat mode), else `boot.menu_timeout`."""
        ltsp = self.ltsp_client(mac).menu_timeout
        return self.config.boot.menu_timeout if ltsp is None else ltsp

    def menu(self, facts: ClientFacts) -> BootMenu:
        """Everything a renderer needs for this client's boot script (reads the root)."""
        if self.api is not None:
            return self._api_menu(facts)
        choices, unavailable = entries.for_firmware(self.entries(facts.mac), facts.efi)
        return BootMenu(
            client=facts,
            entries=tuple(choices),
            default=self.default_entry(facts.mac, choices),
            timeout=self._menu_timeout(facts.mac),
            kernel_params=self.kernel_params(facts.mac),
            base=self.http_base,
            server=self.server_ip,
            unavailable=unavailable,
        )
