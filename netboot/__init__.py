"""netboot: one asyncio process that network-boots PXE/iPXE clients, and the tools that build
what it serves."""

__version__ = "0.1.0"
