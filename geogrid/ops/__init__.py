"""Running geogrid for years: backups and restore, upgrades, checks, metrics, several workers."""
