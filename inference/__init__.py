"""Everything that turns pixels into layers: backends, the layer stack, file formats, jobs."""

__version__ = "0.1.0"
