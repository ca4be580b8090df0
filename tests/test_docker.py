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


def test_compose_runs_replicas_of_the_api_behind_a_proxy():
    yaml = pytest.importorskip("yaml")
    compose = yaml.safe_load((REPO / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert set(services) == {"api", "proxy"}
    api, proxy = services["api"], services["proxy"]
    build = api["build"]
    dockerfile = build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile"
    context = build.get("context", ".") if isinstance(build, dict) else build
    assert (REPO / context / dockerfile).resolve() == (REPO / "Dockerfile").resolve()
    assert api["deploy"]["replicas"] >= 2, "several replicas of the API"
    assert "ports" not in api, "replicas are reached through the proxy only (a fixed host port cannot be shared)"
    assert {str(p) for p in api["expose"]} == {"8000"}
    # every replica follows the same model repository, from a mounted volume, read by serve from the environment
    model_dir = api["environment"]["ATELIER_MODEL_DIR"]
    targets = [str(v).split(":")[1] for v in api["volumes"]]
    assert model_dir in targets, (model_dir, targets)
    for volume in api["volumes"] + proxy["volumes"]:
        source = str(volume).split(":")[0]
        if source.startswith((".", "/", "~")):
            assert (REPO / source).exists(), f"{source} must exist in the repository (or be created by the user)"
        else:
            assert source in compose.get("volumes", {}), source
    # the proxy: a maintained official image with a pinned version, on the API's port, forwarding to the replicas
    image, _, tag = proxy["image"].partition(":")
    assert image == "nginx" and tag and tag != "latest"
    assert {str(p).rsplit(":", 1)[-1] for p in proxy["ports"]} == {"8000"}
    conf_source = next(str(v).split(":")[0] for v in proxy["volumes"] if "nginx" in str(v))
    conf = (REPO / conf_source).read_text(encoding="utf-8")
    assert "listen 8000;" in conf and "server api:8000" in conf and "proxy_pass http://" in conf


def test_serve_follows_the_repository_given_by_compose(monkeypatch):
    yaml = pytest.importorskip("yaml")
    compose = yaml.safe_load((REPO / "compose.yaml").read_text(encoding="utf-8"))
    monkeypatch.setenv("ATELIER_MODEL_DIR", compose["services"]["api"]["environment"]["ATELIER_MODEL_DIR"])
    args = build_parser().parse_args(container_command()[3:])
    assert str(args.model_dir) == "/depot"


def test_the_image_has_the_sample_images_that_check_every_version():
    instructions = dockerfile_instructions()
    copies = [exec_form(args) for kw, args in instructions if kw == "COPY"]
    destination = next(words[-1] for words in copies if words[0] == "images/exemples")
    workdir = next(args for kw, args in instructions if kw == "WORKDIR")
    env_lines = " ".join(args for kw, args in instructions if kw == "ENV")
    expected = (Path(workdir) / destination).as_posix().replace("/./", "/")
    assert f"ATELIER_SAMPLES={expected}" in env_lines, (expected, env_lines)
    assert any((REPO / "images" / "exemples").glob("*.jpg"))
