"""The one exception type the image tools show to the user."""

from __future__ import annotations


class ImageError(Exception):
    """A failure shown as one line; whatever was being built is not published."""
