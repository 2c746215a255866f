"""The boot layer: everything netboot decides about what one client boots.

Transports (DHCP, TFTP, HTTP) parse a request into `ClientFacts` and ask the one
`BootPolicy`; renderers turn the policy's decision into text for the client. Data flows one
way, so a reader follows it: packet → transport → facts → policy → decision → renderer.

    facts.py    ClientFacts: what a client told us, whichever transport heard it
    arch.py     the RFC 4578 architecture table: firmware name and iPXE boot file per arch
    pxe.py      the DHCP boot answer (PxeAnswer / NoAnswer) for one client
    cmdline.py  the `netboot.*` kernel parameters the client side reads, declared once
    entries.py  the boot entries: images of the served root, config entries, an LTSP tree
    ltsp_ipxe.py  a client's settings in an LTSP site's ltsp.ipxe (compat mode)
    api.py      API mode: a pixiecore-style HTTP API decides per MAC (cached)
    api_cmdline.py  the API's cmdline as pixiecore reads it (template `URL`, object form)
    sealed.py   sealed names of the API's URLs, which netboot proxies (and no others)
    menu.py     BootEntry and BootMenu, the decision a renderer consumes
    policy.py   BootPolicy: server address, HTTP port and config in; every answer out
    ipxe.py     the iPXE renderer (templates in `ipxe/`)

Nothing here imports a transport (`netboot.dhcp`, `netboot.tftp`, `netboot.http`); a test
keeps it that way.
"""

from netboot.boot.facts import ClientFacts
from netboot.boot.menu import BootEntry, BootMenu
from netboot.boot.policy import BootPolicy
from netboot.boot.pxe import NoAnswer, PxeAnswer

__all__ = ["BootEntry", "BootMenu", "BootPolicy", "ClientFacts", "NoAnswer", "PxeAnswer"]
