"""Every command the README and docs/ show exists as shown: each `make` target and the variables
it is given, each `python -m` module and the subcommands and options named after it, each
`pulumi` subcommand's options (asked of the CLI itself), each `rc-service` action of our OpenRC
scripts, each stack output and bench script named. What a command then does is the other tests'
business; here a user typing one from the docs must not meet "no such command"."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest

from lab.engine import toolchain_bin
from tests.conftest import stack_config

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND = re.compile(r"^(?:\$ )?(make|python3? -m|pulumi|rc-service) ")


def shown_commands() -> list[tuple[str, str]]:
    """(page, command) for each command line in a code block and each inline `command`."""
    out = set()
    for page in PAGES:
        text = page.read_text()
        lines = [line for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S) for line in block.splitlines()]
        # Inline code may wrap over a line break.
        prose = re.sub(r"```.*?```", "", text, flags=re.S)
        lines += [" ".join(code.split()) for code in re.findall(r"`([^`]+)`", prose)]
        for line in lines:
            line = line.strip().split("  #")[0].strip()
            # The quick start's sample output names commands after a label (`shell  make lab-ssh`).
            line = re.sub(r"^(shell|try|https)\s+", "", line)
            if COMMAND.match(line):
                out.add((page.name, line))
    return sorted(out)


COMMANDS = shown_commands()


def words(command: str) -> list[str]:
    """The words a user types, without placeholders (`STACK`, `<at least 8>`, `...`) or values."""
    plain = re.sub(r"'[^']*'|\"[^\"]*\"|<[^>]*>|\$\([^)]*\)", " ", command)
    plain = plain.split("<")[0]
    return [w for w in plain.split() if w not in {"...", "|"}]


@cache
def make_targets() -> tuple[set[str], str]:
    makefile = (ROOT / "Makefile").read_text()
    return set(re.findall(r"(?m)^([A-Za-z0-9_.-]+):", makefile)), makefile


@cache
def pulumi_help(*subcommand: str) -> str:
    bin_dir = toolchain_bin()
    cli = str(bin_dir / "pulumi") if bin_dir else shutil.which("pulumi")
    assert cli, "no pulumi CLI (make toolchain builds it)"
    proc = subprocess.run([cli, *subcommand, "--help"], capture_output=True, text=True, timeout=60,
                          env={"PULUMI_SKIP_UPDATE_CHECK": "true", "PATH": "/usr/bin:/bin", "HOME": "/tmp"})
    assert proc.returncode == 0, f"pulumi {' '.join(subcommand)}: {proc.stderr.strip()[:300]}"
    return proc.stdout


def initd_actions() -> dict[str, set[str]]:
    """Our OpenRC scripts -> the actions `rc-service` takes for each."""
    out = {}
    for script in (ROOT / "templates").glob("*.initd.j2"):
        text = script.read_text()
        extra = " ".join(re.findall(r'extra_(?:started_)?commands="([^"]*)"', text)).split()
        out[script.name.removesuffix(".initd.j2")] = {"start", "stop", "restart", "status", *extra}
    return out


def test_the_docs_show_commands():
    kinds = {COMMAND.match(c).group(1) for _, c in COMMANDS}  # type: ignore[union-attr]
    assert {"make", "pulumi", "rc-service"} <= kinds and any(k.startswith("python") for k in kinds), kinds
    assert len(COMMANDS) > 50, len(COMMANDS)


@pytest.mark.parametrize("page,command", [c for c in COMMANDS if c[1].startswith("make")],
                         ids=lambda v: v if " " in v else None)
def test_each_make_command_names_a_target_and_variables_the_makefile_has(page, command):
    targets, makefile = make_targets()
    for word in words(command)[1:]:
        if word.startswith("-"):
            continue
        if "=" in word:
            variable = word.split("=")[0]
            assert f"$({variable})" in makefile, f"{page}: {command}: the Makefile never reads {variable}"
        else:
            assert word in targets, f"{page}: {command}: no make target {word!r}"


@pytest.mark.parametrize("page,command", [c for c in COMMANDS if c[1].startswith("python")])
def test_each_python_command_names_a_module_and_what_it_takes(page, command):
    _, _, module, *rest = words(command)
    spec = importlib.util.find_spec(module)
    assert spec is not None, f"{page}: {command}: no module {module}"
    origin = Path(spec.origin or "")
    main = origin.with_name("__main__.py") if origin.name == "__init__.py" else origin
    source = "\n".join(p.read_text() for p in main.parent.glob("*.py")) if main.name == "__main__.py" \
        else main.read_text()
    for i, word in enumerate(rest):
        if i and rest[i - 1].startswith("--"):
            continue  # an option's value
        for part in word.split("|"):
            part = part.strip("[]")
            if not part or part.isupper() or "/" in part or "=" in part:
                continue  # a placeholder, a path or a value
            assert re.search(rf"[\"']{re.escape(part)}[\"'=]", source), f"{page}: {command}: {module} takes no {part!r}"


@pytest.mark.parametrize("page,command", [c for c in COMMANDS if c[1].startswith("pulumi")])
def test_each_pulumi_command_is_one_the_cli_has_with_those_options(page, command):
    typed = words(command)[1:]
    subcommand = [w for w in typed[:2] if not w.startswith("-")]
    if len(subcommand) == 2 and subcommand[1] not in {"set", "init", "output", "rm", "ls"}:
        subcommand = subcommand[:1]  # a positional argument (a stack name, an output)
    help_text = pulumi_help(*subcommand)
    for flag in (w.split("=")[0] for w in typed if w.startswith("--")):
        assert re.search(rf"(?m)^\s+(-\w, )?{re.escape(flag)}\b", help_text), \
            f"{page}: {command}: `pulumi {' '.join(subcommand)}` has no {flag}"


@pytest.mark.parametrize("page,command", [c for c in COMMANDS if c[1].startswith("rc-service ")])
def test_each_rc_service_command_is_an_action_of_our_scripts(page, command):
    _, service, action = words(command)[:3]
    actions = initd_actions()
    assert service in actions, f"{page}: {command}: no OpenRC script of ours for {service}"
    assert action in actions[service], f"{page}: {command}: {service} has no {action!r}"


def test_each_stack_output_and_bench_script_the_docs_name_exists():
    program = (ROOT / "__main__.py").read_text()
    text = "\n".join(page.read_text() for page in PAGES)
    for output in set(re.findall(r"pulumi stack output (?:--stack \S+ )?(\w+)", text)):
        assert f'pulumi.export("{output}"' in program, output
    for script in set(re.findall(r"bench/(\w+\.py)", text)):
        assert (ROOT / "bench" / script).is_file(), script
    # The shipped stacks the docs point at are tracked and load.
    for stack in ("prod", "k3s", "lab", "lab-aa"):
        assert stack_config(stack)
