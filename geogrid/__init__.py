"""geogrid: GIS mapping and grid partitioning for township grid-based service management.

The core package: settings, the PostGIS store and its migrations, the private
cluster manager, ingest and geocoding, domain services and the ``geogrid`` CLI.
Nothing here is built at import time; factories take a :class:`Settings`.
"""

__version__ = "0.1.0"
