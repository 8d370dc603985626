"""`python -m bridge` is `incident-bridge`."""

from bridge.cli import run

run()
