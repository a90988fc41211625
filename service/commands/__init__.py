"""CLI subcommands. Each module defines `register(subparsers)`; add new ones to COMMANDS."""

from service.commands import (
    audit,
    backup,
    client,
    db,
    demo,
    export,
    fhir_import,
    keys,
    policy,
    search,
    serve,
    token,
    user,
)

COMMANDS = [serve.register, db.register, demo.register, audit.register, search.register,
            user.register, client.register, token.register, keys.register, policy.register, export.register,
            backup.register, fhir_import.register]
