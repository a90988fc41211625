"""The command line as scripts and operators use it: --help with examples everywhere, exit codes to rely on,
`sharedcare serve --port P` and a plain `sharedcare token` agreeing on the issuer, and `demo load` counting the
forms the record holds. SQLite and PostgreSQL where a database is involved."""

from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from service.cli import EXAMPLES, build_parser, main
from service.config import get_settings
from tests.ops.support import server_env
from tests.running import SHAREDCARE, running_server


def _commands(parser: argparse.ArgumentParser, words: list[str]) -> list[list[str]]:
    out = [words]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += _commands(sub, [*words, name])
    return out


def test_every_command_has_help_with_examples(capsys: pytest.CaptureFixture[str]) -> None:
    commands = _commands(build_parser(), [])
    assert len(commands) > 25
    for words in commands:
        with pytest.raises(SystemExit) as done:
            main([*words, "--help"])
        assert done.value.code == 0, words
        out = capsys.readouterr().out
        assert "usage: sharedcare" in out, words
        if " ".join(words) in EXAMPLES:
            assert "examples:\n  " in out and "sharedcare " in out.split("examples:", 1)[1], words
    top = [w for w in commands if len(w) == 1]
    missing = [w[0] for w in top if w[0] not in EXAMPLES]
    assert not missing, f"commands without examples: {missing}"
    main_help = subprocess.run([SHAREDCARE, "--help"], capture_output=True, text=True, check=False)
    assert main_help.returncode == 0 and "exit codes:" in main_help.stdout


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHAREDCARE_")}
    env.update(SHAREDCARE_VAR_DIR=str(tmp_path / "var"), **extra)
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SHAREDCARE, *args], env=env, capture_output=True, text=True, timeout=120, check=False)


def test_exit_codes(tmp_path: Path) -> None:
    bad = _run(["audit", "verify"], _env(tmp_path, SHAREDCARE_MAX_BODY_BYTES="lots"))
    assert bad.returncode == 3, bad.stderr
    assert "SHAREDCARE_MAX_BODY_BYTES" in bad.stderr and "Traceback" not in bad.stderr
    down = _run(["audit", "verify"], _env(tmp_path, SHAREDCARE_DATABASE_URL="postgresql://nobody@127.0.0.1:9/none"))
    assert down.returncode == 4, down.stderr
    assert "database is unavailable" in down.stderr and "Traceback" not in down.stderr
    usage = _run(["serve", "--workers", "many"], _env(tmp_path))
    assert usage.returncode == 2 and "invalid int value" in usage.stderr
    assert _run(["nonsense"], _env(tmp_path)).returncode == 2


def test_token_for_an_unknown_user_is_a_usage_error(settings, clean_services, monkeypatch,  # type: ignore[no-untyped-def]
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    for key, value in server_env(settings).items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    try:
        assert main(["token", "--user", "nobody.at.all"]) == 2
    finally:
        get_settings.cache_clear()
    assert "nobody.at.all" in capsys.readouterr().err


def test_serve_on_another_port_and_a_plain_token_agree(demo, settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env = server_env(settings)
    env.pop("SHAREDCARE_BASE_URL")  # as `sharedcare serve --port P` without it: the URL follows host and port
    plain = {**{k: v for k, v in os.environ.items() if not k.startswith("SHAREDCARE_")}, **env}
    loaded = _run(["demo", "load"], plain)
    assert loaded.returncode == 0, loaded.stderr
    assert "questionnaires published 1" in loaded.stderr, loaded.stderr  # the form is in the record
    with running_server(tmp_path / "srv", env, workers=1) as base:
        made = _run(["token", "--user", "nurse.nina"], plain)
        assert made.returncode == 0, made.stderr
        token = made.stdout.strip()
        assert token.count(".") == 2 and "\n" not in token
        assert base in made.stderr  # (says which address it followed)
        read = httpx.get(f"{base}/fhir/Patient/pat-pat", headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert read.status_code == 200, read.text
        smart = httpx.get(f"{base}/fhir/.well-known/smart-configuration", timeout=30).json()
        assert smart["token_endpoint"].startswith(base)
        other = _run(["token", "--user", "nurse.nina"], {**plain, "SHAREDCARE_BASE_URL": "http://127.0.0.1:1"})
        refused = httpx.get(f"{base}/fhir/Patient/pat-pat", timeout=30,
                            headers={"Authorization": f"Bearer {other.stdout.strip()}"})
        assert refused.status_code == 401  # (an explicit SHAREDCARE_BASE_URL wins; a foreign issuer is refused)
