"""Vector tiles, heat maps and map pages (no FastAPI here: ``api`` mounts them)."""
