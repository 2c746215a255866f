"""DHCP: byte-level pre-filter, scapy codec, PXE answers, proxyDHCP and the full server."""
