"""labquake: time to failure of laboratory earthquakes from their acoustic signal."""

__version__ = "0.1.0"
