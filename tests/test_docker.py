"""Dockerfile and compose.yaml, checked without Docker: what they copy exists, what they run is a real
``python -m atelier`` command with accepted options, and both files agree on the port and the model path."""

from __future__ import annotations

import fnmatch
import glob
import json
import shlex
from pathlib import Path

import pytest

from atelier.cli import build_parser

REPO = Path(__file__).resolve().parents[1]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    instructions, current = [], ""
    for line in (REPO / "Dockerfile").read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):  # comment inside a continued instruction
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        keyword, _, rest = current.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        current = ""
    return instructions


def exec_form(arguments: str) -> list[str]:
    """``["a", "b"]`` (exec form) or ``a b`` (shell form) → list of words."""
    return json.loads(arguments) if arguments.startswith("[") else shlex.split(arguments)


def dockerignore_patterns() -> list[str]:
    path = REPO / ".dockerignore"
    if not path.exists():
        return []
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def ignored(relative: str, patterns: list[str]) -> bool:
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        candidates = [pattern, pattern.replace("**/", "")] if "**/" in pattern else [pattern]
        if any(fnmatch.fnmatch(relative, p) or relative.startswith(p + "/") for p in candidates):
            result = not negate
    return result


def container_command() -> list[str]:
    instructions = dict(dockerfile_instructions())
    entrypoint = exec_form(instructions.get("ENTRYPOINT", "[]"))
    cmd = exec_form(instructions.get("CMD", "[]"))
    return entrypoint + cmd


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_base_image_user_and_port():
    instructions = dockerfile_instructions()
    froms = [args for kw, args in instructions if kw == "FROM"]
    assert froms and froms[0].startswith("python:3.12-slim")
    users = [args for kw, args in instructions if kw == "USER"]
    assert users and users[-1] not in ("root", "0"), "the server must not run as root"
    assert [args for kw, args in instructions if kw == "EXPOSE"] == ["8000"]


def test_everything_copied_exists_and_is_not_dockerignored():
    patterns = dockerignore_patterns()
    copies = [exec_form(args) for kw, args in dockerfile_instructions() if kw in ("COPY", "ADD")]
    assert copies, "the Dockerfile copies nothing"
    for words in copies:
        sources = [w for w in words[:-1] if not w.startswith("--")]
        assert sources, words
        for source in sources:
            matches = glob.glob(str(REPO / source))
            assert matches, f"COPY {source}: absent from the repository"
            for match in matches:
                relative = Path(match).relative_to(REPO).as_posix()
                assert not ignored(relative, patterns), f"COPY {source}: excluded by .dockerignore"
    # the package really is there, with its entry point
    assert (REPO / "atelier" / "__main__.py").exists() and (REPO / "atelier" / "cli" / "serve.py").exists()


def test_dockerignore_keeps_the_context_small():
    patterns = dockerignore_patterns()
    for heavy in (".venv", ".git", "tests"):
        assert ignored(heavy, patterns), heavy


def test_container_command_is_a_real_serve_invocation():
    argv = container_command()
    assert argv[:3] == ["python", "-m", "atelier"], argv
    args = build_parser().parse_args(argv[3:])  # argparse exits (SystemExit) on an unknown option
    assert args.command == "serve"
    assert args.host == "0.0.0.0", "inside a container the server must listen on all interfaces"
    assert args.port == 8000
    # the model comes from the environment (a mounted volume), which serve reads when --model is absent
    env_lines = " ".join(args_ for kw, args_ in dockerfile_instructions() if kw == "ENV")
    assert "ATELIER_MODEL=/models/" in env_lines
    assert "--model" in argv or "ATELIER_MODEL" in env_lines


def test_serve_reads_the_model_from_the_environment(monkeypatch):
    monkeypatch.setenv("ATELIER_MODEL", "/models/cnn.keras")
    args = build_parser().parse_args(container_command()[3:])
    assert str(args.model) == "/models/cnn.keras"


def test_extra_options_appended_by_docker_run_are_accepted():
    argv = [*container_command(), "--workers", "2", "--no-access-log"]
    args = build_parser().parse_args(argv[3:])
    assert args.workers == 2 and args.access_log is False


def test_compose_uses_the_dockerfile_and_the_same_port():
    yaml = pytest.importorskip("yaml")
    compose = yaml.safe_load((REPO / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert len(services) == 1
    service = next(iter(services.values()))
    build = service["build"]
    dockerfile = build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile"
    context = build.get("context", ".") if isinstance(build, dict) else build
    assert (REPO / context / dockerfile).resolve() == (REPO / "Dockerfile").resolve()
    container_ports = {str(p).rsplit(":", 1)[-1].split("/")[0] for p in service["ports"]}
    assert container_ports == {"8000"}
    # the model path given to the container is inside a mounted volume
    model = service["environment"]["ATELIER_MODEL"]
    targets = [str(v).split(":")[1] for v in service["volumes"]]
    assert any(model.startswith(target.rstrip("/") + "/") for target in targets), (model, targets)
    # named volumes are declared
    for volume in service["volumes"]:
        source = str(volume).split(":")[0]
        if not source.startswith((".", "/", "~")):
            assert source in compose.get("volumes", {}), source
