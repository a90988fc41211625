"""CLI subcommands. Each module defines `register(subparsers)`; add new ones to COMMANDS."""

from service.commands import audit, db, demo, search, serve

COMMANDS = [serve.register, db.register, demo.register, audit.register, search.register]
