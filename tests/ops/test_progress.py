"""Progress bars on the long commands (`demo load`, `search reindex`, `export work --once`), run as an operator
runs them: with stderr a terminal (a pseudo-terminal here) a rich bar counts the work and the summary line
follows; with stderr a pipe or a file only the plain summary line, nothing for a script to wade through.
`demo load` counts the forms the record holds. SQLite and PostgreSQL."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import termios
from typing import Any

from tests.export.support import ASYNC
from tests.ops.support import server_env
from tests.running import SHAREDCARE

BAR = "━"  # (rich's bar; never in a plain summary)


def _env(settings: Any) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items()
            if not k.startswith("SHAREDCARE_") and k not in ("FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "COLUMNS")}
    return {**keep, **server_env(settings), "TERM": "xterm-256color"}


def _plain(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    done = subprocess.run([SHAREDCARE, *args], env=env, capture_output=True, text=True, timeout=300, check=False)
    return done.returncode, done.stderr


def _terminal(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run with stderr on a pseudo-terminal (120 columns); its exit code and all it wrote there."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen([SHAREDCARE, *args], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=slave)
    os.close(slave)
    out = b""
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # (EIO: the process has closed the terminal)
            break
        if not data:
            break
        out += data
    os.close(master)
    return proc.wait(timeout=300), re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.decode(errors="replace"))


def test_demo_load_shows_a_bar_on_a_terminal_and_a_summary_line_otherwise(settings, clean_services) -> None:  # type: ignore[no-untyped-def]
    env = _env(settings)
    code, said = _terminal(["demo", "load"], env)
    assert code == 0, said
    assert BAR in said and "loading the demo" in said, said
    summary = said.strip().splitlines()[-1]
    assert summary.startswith("demo data: written ") and "questionnaires published 1" in summary, said
    code, said = _plain(["demo", "load"], env)  # (again: nothing new to write)
    assert code == 0, said
    assert BAR not in said and "loading the demo" not in said, said
    assert re.search(r"demo data: written 0, unchanged \d+, .*questionnaires published 1", said), said


def test_reindex_counts_every_stored_resource(settings, demo) -> None:  # type: ignore[no-untyped-def]
    from service.search.reindex import count

    stored = count(demo.db)
    assert stored > 10
    env = _env(settings)
    code, said = _terminal(["search", "reindex"], env)
    assert code == 0, said
    assert BAR in said and f"{stored}/{stored}" in said, said
    assert f"reindexed {stored} resources in " in said
    code, said = _plain(["search", "reindex", "--type", "Patient"], env)
    assert code == 0, said
    assert BAR not in said and said.strip().startswith("reindexed ") and len(said.strip().splitlines()) == 1, said


def test_export_work_once_shows_the_jobs_on_a_terminal(settings, demo, client, auth_headers) -> None:  # type: ignore[no-untyped-def]
    gp = auth_headers(client="gp-system")
    env = _env(settings)
    for _ in range(2):
        r = client.get("/fhir/Patient/$export?_type=Patient,Observation", headers={**gp, **ASYNC})
        assert r.status_code == 202, r.text
    code, said = _terminal(["export", "work", "--once"], env)
    assert code == 0, said
    assert BAR in said and "2/2" in said, said
    assert said.strip().splitlines()[-1] == "2 export job(s) run (done 2)", said
    r = client.get("/fhir/Patient/$export?_type=Patient", headers={**gp, **ASYNC})
    assert r.status_code == 202, r.text
    code, said = _plain(["export", "work", "--once"], env)
    assert code == 0 and said.strip() == "1 export job(s) run (done 1)", said
    status = client.get(r.headers["content-location"].replace(settings.base_url, ""), headers=gp)
    assert status.status_code == 200 and status.json()["output"], status.text  # (the job was really run)


def test_import_shows_its_bar_only_on_a_terminal(settings, clean_services, tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "orgs.ndjson"
    f.write_text("".join(f'{{"resourceType": "Organization", "id": "progress-{i}", "name": "Org {i}"}}\n'
                         for i in range(3)))
    env = _env(settings)
    code, said = _terminal(["import", str(f)], env)
    assert code == 0 and BAR in said and "3/3" in said and "import summary" in said, said
    code, said = _plain(["import", str(f)], env)
    assert code == 0 and BAR not in said and "import summary" in said, said
