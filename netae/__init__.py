"""netae: learn normal network traffic from packet captures and flag the flows that do not fit."""

__version__ = "0.1.0"
