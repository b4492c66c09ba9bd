"""How the lab (and the tests) run the real Pulumi CLI: which binary, which backend, which
passphrase, and no network.

- The CLI: `$HAPROXY_HA_TOOLCHAIN/bin/pulumi` when `make toolchain` built it, with the resource
  plugins it built in the plugin cache of `$HAPROXY_HA_TOOLCHAIN/home` (PULUMI_HOME), else the
  `pulumi` on PATH (Pulumi's own installer) with its own plugins.
- Each lab stack keeps its state in a local file backend and encrypts its secrets with the
  passphrase provider, from a passphrase file made for that stack, under its state folder.
- Offline: no update check, no automatic plugin download.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
TOOLCHAIN = Path(os.environ.get("HAPROXY_HA_TOOLCHAIN", "/var/cache/haproxy-ha/toolchain"))
OFFLINE = {"PULUMI_SKIP_UPDATE_CHECK": "true", "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true"}


class EngineError(RuntimeError):
    pass


def toolchain_bin() -> Path | None:
    """The folder of our built CLI and plugins, or None when the PATH's pulumi is used."""
    return TOOLCHAIN / "bin" if (TOOLCHAIN / "bin" / "pulumi").is_file() else None


def python_cmd() -> str:
    """The program's Python: the project's virtualenv. Our language host reads it from
    PULUMI_PYTHON_CMD (it predates the runtime options the CLI now sends)."""
    venv = PROJECT_DIR / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def stack_env(state_dir: Path) -> dict[str, str]:
    """The variables that select a lab stack's backend and passphrase, offline."""
    env = dict(OFFLINE)
    env["PULUMI_BACKEND_URL"] = f"file://{state_dir / 'backend'}"
    env["PULUMI_CONFIG_PASSPHRASE_FILE"] = str(state_dir / "passphrase")
    env["PULUMI_PYTHON_CMD"] = python_cmd()
    bin_dir = toolchain_bin()
    if bin_dir is not None:
        env["PATH"] = f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}"
        # Its plugin cache holds the resource plugins tools/toolchain.sh built.
        env["PULUMI_HOME"] = str(TOOLCHAIN / "home")
    return env


def prepare(state_dir: Path) -> None:
    """The backend folder and the stack's passphrase file (made once, 0600)."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    (state_dir / "backend").mkdir(exist_ok=True, mode=0o700)
    passphrase = state_dir / "passphrase"
    if not passphrase.exists():
        fd = os.open(passphrase, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(24) + "\n")


def pulumi_path(env: dict[str, str]) -> str:
    found = shutil.which("pulumi", path=env.get("PATH", os.environ.get("PATH")))
    if found is None:
        raise EngineError("no pulumi CLI: run `make setup` (it builds one) or install Pulumi")
    return found


def pulumi(state_dir: Path, *args: str, check: bool = True, stdin: str | None = None, capture: bool = True,
           extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run `pulumi ARGS` in the project folder with the stack's backend and passphrase."""
    env = {**os.environ, **stack_env(state_dir), **(extra_env or {})}
    # Pulumi reads PULUMI_CONFIG_PASSPHRASE before the file: a user's own must not lock the lab.
    env.pop("PULUMI_CONFIG_PASSPHRASE", None)
    argv = [pulumi_path(env), "--non-interactive", *args]
    if capture:
        proc = subprocess.run(argv, cwd=PROJECT_DIR, env=env, input=stdin, capture_output=True, text=True)
    else:
        proc = subprocess.run(argv, cwd=PROJECT_DIR, env=env, input=stdin, text=True)
    if check and proc.returncode != 0:
        raise EngineError(f"pulumi {' '.join(args[:2])} failed (exit status {proc.returncode}):\n"
                          f"{(proc.stdout or '')[-6000:]}{(proc.stderr or '')[-3000:]}")
    return proc


def shell_exports(state_dir: Path) -> str:
    """`eval "$(make -s env)"`: the lab stack's engine settings in the current shell."""
    env = stack_env(state_dir)
    env.pop("PATH", None)
    # Pulumi reads PULUMI_CONFIG_PASSPHRASE before the file: the lab's file must win.
    lines = ["unset PULUMI_CONFIG_PASSPHRASE", *(f"export {k}={_quote(v)}" for k, v in sorted(env.items()))]
    bin_dir = toolchain_bin()
    if bin_dir is not None:
        lines.append(f'export PATH={_quote(str(bin_dir))}:"$PATH"')
    return "\n".join(lines) + "\n"


def _quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"
