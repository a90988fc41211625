"""CLI subcommands. Each module defines `register(subparsers)`; add new ones to COMMANDS."""

from service.commands import audit, db, demo, serve

COMMANDS = [serve.register, db.register, demo.register, audit.register]
