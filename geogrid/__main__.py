"""``python -m geogrid`` runs the CLI."""

from geogrid.cli import main

main()
