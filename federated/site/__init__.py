"""What runs at a hospital: its rows, the statistics it sends, its evaluations, its rules in force."""

from .handler import Site, approve_in_process, scrub
from .patients import ConsentSource

__all__ = ["ConsentSource", "Site", "approve_in_process", "scrub"]
