"""The edgesight web app: the webcam page, its static files and browser runtimes, and the
configuration the page needs (which nodes to use)."""

from __future__ import annotations


class WebappError(Exception):
    """Base of every error the web app raises on purpose."""
