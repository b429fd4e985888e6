"""The console image's Dockerfile and .dockerignore, checked by reading them (no Docker engine needed).

Non-root user, a Python health check, bases pinned by digest, no secrets copied or baked in, no backend
chosen in the image but the viewer role by default, the paths the console writes declared as volumes (the
ECS task runs it on a read-only root filesystem), and only the app requirements (no pyspark, no test
tools) installed from the hashed lock, so the image runs the versions the suite tested.
"""

from __future__ import annotations

import ast
import itertools
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.config import Settings

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD|ACCESS_KEY|CREDENTIAL|PRIVATE_KEY", re.IGNORECASE)
SENSITIVE_SOURCE = re.compile(
    r"(^|/)(\.env[^/]*|secrets\.toml|[^/]*\.pem|credentials|\.aws|\.signal_stream|\.venv|\.git)(/|$)"
)
NOT_IN_IMAGE = ("tests", "glue_job", "infra", "bench", ".signal_stream", ".venv", ".env", ".git")
DEV_ONLY_PACKAGES = {"pyspark", "chispa", "pytest", "pytest-timeout", "moto", "playwright", "ruff", "mypy", "cfn-lint"}
CONSOLE_SOURCES = ("Home.py", "core", "ui", "pages")
FORBIDDEN_IN_IMAGE = {"pyspark", "glue_job"}  # not installed / not copied: a top-level import breaks the console
BASE_IMAGE = "python:3.11-slim-bookworm"
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: its keyword (upper case), arguments and build stage."""

    keyword: str
    args: str
    stage: int


def parse_dockerfile(text: str) -> list[Instruction]:
    """Return the instructions, with line continuations joined and comments dropped."""
    instructions: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(keyword, args.strip(), stage))
    return instructions


def exec_form(args: str) -> list[str]:
    """Return the words of a JSON (exec) form or a shell form argument."""
    args = args.strip()
    if args.startswith("["):
        return list(ast.literal_eval(args))
    return shlex.split(args)


def copy_sources(instruction: Instruction) -> list[str]:
    """Return the context sources of a COPY/ADD (not --from=stage copies)."""
    words = exec_form(instruction.args)
    if any(w.startswith("--from") for w in words):
        return []
    words = [w for w in words if not w.startswith("--")]
    return words[:-1]


def env_names(instruction: Instruction) -> list[str]:
    """Return the variable names an ENV or ARG sets."""
    words = shlex.split(instruction.args)
    if instruction.keyword == "ARG" or (len(words) == 2 and "=" not in words[0]):
        return [words[0].split("=", 1)[0]]
    return [w.split("=", 1)[0] for w in words if "=" in w]


def image_env(instructions: list[Instruction]) -> dict[str, str]:
    """Return the environment the final stage's ENV instructions give a container (values as written)."""
    env: dict[str, str] = {}
    for instruction in final_stage(instructions):
        if instruction.keyword != "ENV":
            continue
        words = shlex.split(instruction.args)
        if len(words) >= 2 and "=" not in words[0]:  # legacy form: ENV NAME value with spaces
            env[words[0]] = " ".join(words[1:])
        else:
            for word in words:
                name, sep, value = word.partition("=")
                if sep:
                    env[name] = value
    return env


def volume_paths(instructions: list[Instruction]) -> set[str]:
    """Return the paths the final stage declares with VOLUME (JSON or plain form)."""
    return {path for i in final_stage(instructions) if i.keyword == "VOLUME" for path in exec_form(i.args)}


def base_image_problems(instructions: list[Instruction]) -> list[str]:
    """Return why the FROM lines are not the pinned base: each must be BASE_IMAGE@sha256:<64 hex>, one digest."""
    problems: list[str] = []
    aliases: set[str] = set()
    digests: set[str] = set()
    for instruction in (i for i in instructions if i.keyword == "FROM"):
        words = [w for w in instruction.args.split() if not w.startswith("--")]
        image = words[0]
        if image in aliases:
            continue
        if len(words) == 3 and words[1].upper() == "AS":
            aliases.add(words[2])
        name, _, digest = image.partition("@")
        if name != BASE_IMAGE:
            problems.append(f"base image {image} is not {BASE_IMAGE}")
        if not DIGEST.search(image):
            problems.append(f"base image {image} is not pinned by digest (@sha256:<64 hex>)")
        digests.add(digest)
    if len(digests) > 1:
        problems.append(f"the stages pin different digests: {sorted(digests)}")
    return problems


def ignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [line.strip().strip("/") for line in lines if line.strip() and not line.strip().startswith("#")]


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """Return a regex for a .dockerignore pattern: anchored at the context root, `**` spans folders."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + "$")


def ignored(path: str, patterns: list[str]) -> bool:
    """Return whether .dockerignore keeps a context path out of the build (a folder takes its contents)."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = _glob_regex(pattern[1:] if negate else pattern)
        if any(regex.match(candidate) for candidate in candidates):
            excluded = not negate
    return excluded


def requirement_names(path: Path, seen: set[Path] | None = None) -> set[str]:
    """Return the package names a requirements file installs, following `-r` includes."""
    seen = seen if seen is not None else set()
    if path in seen:
        return set()
    seen.add(path)
    names: set[str] = set()
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith(("-r ", "--requirement")):
            include = line.split(None, 1)[1] if " " in line else line.split("=", 1)[1]
            names |= requirement_names(path.parent / include.strip(), seen)
        elif not line.startswith("-"):
            names.add(re.split(r"[\s\[<>=!~;@]", line, maxsplit=1)[0].lower().replace("_", "-"))
    return names


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last]


def test_base_images_are_pinned_slim_python(instructions: list[Instruction]) -> None:
    stages = [i for i in instructions if i.keyword == "FROM"]
    aliases: set[str] = set()
    for instruction in stages:
        words = instruction.args.split()
        image = next(w for w in words if not w.startswith("--"))
        if image in aliases:
            continue
        name, _, tag = image.partition(":")
        assert (tag and tag != "latest") or "@sha256:" in image, f"unpinned base image {image}"
        assert name.endswith("python") and "slim" in tag, f"base is not a slim Python image: {image}"
        if "AS" in [w.upper() for w in words]:
            aliases.add(words[-1])
    assert stages[-1].args.split()[0].startswith("python:3.11-")


def test_base_images_are_pinned_by_digest(instructions: list[Instruction]) -> None:
    # A tag moves (every Debian or Python patch release); a digest is the exact image the suite's build used.
    assert len([i for i in instructions if i.keyword == "FROM"]) >= 2, "expected a builder and a final stage"
    assert base_image_problems(instructions) == []
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert f"docker buildx imagetools inspect {BASE_IMAGE}" in text, "say how to refresh the digest"


@pytest.mark.parametrize(("dockerfile", "expected"), [
    pytest.param(f"FROM {BASE_IMAGE}\n", "not pinned by digest", id="tag-only"),
    pytest.param(f"FROM {BASE_IMAGE}@sha256:{'a' * 64} AS b\nFROM {BASE_IMAGE}\n", "not pinned by digest",
                 id="one-stage-unpinned"),
    pytest.param(f"FROM {BASE_IMAGE}@sha256:abc123\n", "not pinned by digest", id="short-digest"),
    pytest.param(f"FROM python:3.12-slim@sha256:{'a' * 64}\n", "is not python:3.11-slim-bookworm", id="other-base"),
    pytest.param(f"FROM {BASE_IMAGE}@sha256:{'a' * 64} AS b\nFROM {BASE_IMAGE}@sha256:{'b' * 64}\n",
                 "different digests", id="two-digests"),
])
def test_pin_check_rejects(dockerfile: str, expected: str) -> None:
    problems = base_image_problems(parse_dockerfile(dockerfile))
    assert any(expected in p for p in problems), problems


def test_pin_check_accepts_pinned_stages_and_aliases() -> None:
    pinned = f"{BASE_IMAGE}@sha256:{'0' * 64}"
    text = f"FROM {pinned} AS builder\nRUN true\nFROM builder AS more\nFROM --platform=linux/arm64 {pinned}\n"
    assert base_image_problems(parse_dockerfile(text)) == []


def test_image_defaults_to_the_viewer_role(instructions: list[Instruction]) -> None:
    # An image run with no settings (no task definition, a stray `docker run`) must not hand out operator rights:
    # without SIGNAL_ROLE the local backend, the image's default backend, makes everyone an operator.
    env = image_env(instructions)
    assert env.get("SIGNAL_ROLE") == "viewer"
    signal_env = {k: v for k, v in env.items() if k.startswith("SIGNAL_")}
    assert Settings.from_env(signal_env).role == "viewer"
    assert Settings.from_env({}).role == "operator", "the local default this guards against has changed"
    assert Settings.from_env({**signal_env, "SIGNAL_BACKEND": "aws", "SIGNAL_LAKE_BUCKET": "b"}).role == "viewer"


def test_paths_the_console_writes_are_volumes_owned_by_the_app_user(instructions: list[Instruction]) -> None:
    # The ECS task mounts scratch volumes here on a read-only root filesystem (tests/infra checks the mounts);
    # Fargate gives each the image's content and owner only when the image declares the path a VOLUME.
    env = image_env(instructions)
    stage = final_stage(instructions)
    workdir = [i.args for i in stage if i.keyword == "WORKDIR"][-1]
    home = Path(workdir) / env.get("SIGNAL_HOME", ".signal_stream")
    assert home.is_absolute(), home
    assert volume_paths(instructions) == {str(home), "/tmp", env["HOME"]}
    runs = " ".join(i.args for i in stage if i.keyword == "RUN")
    assert f"--home-dir {env['HOME']}" in runs, "HOME is not the app user's home"
    assert "chown app:app ./.signal_stream" in runs and str(home) == f"{workdir}/.signal_stream"
    keywords = [i.keyword for i in stage]
    assert keywords.index("VOLUME") < keywords.index("USER"), "declare the volumes after preparing them"
    last_run = max(n for n, k in enumerate(keywords) if k in {"RUN", "COPY"})
    assert last_run < keywords.index("VOLUME"), "a RUN/COPY after VOLUME does not reach the volume"


def test_runs_as_a_non_root_user_set_before_cmd(instructions: list[Instruction]) -> None:
    stage = final_stage(instructions)
    keywords = [i.keyword for i in stage]
    assert "USER" in keywords and "CMD" in keywords
    users = [i for i in stage if i.keyword == "USER"]
    assert keywords.index("USER") < keywords.index("CMD")
    user = users[-1].args.split(":")[0]
    assert user not in {"root", "0"}, "the image runs as root"


def test_healthcheck_uses_python_against_streamlit_health(instructions: list[Instruction]) -> None:
    checks = [i for i in final_stage(instructions) if i.keyword == "HEALTHCHECK"]
    assert len(checks) == 1
    command = checks[0].args.split("CMD", 1)[1]
    words = exec_form(command)
    assert words[0] == "python" and "/_stcore/health" in " ".join(words)
    assert not {"curl", "wget"} & set(words)


def test_serves_the_console_on_8501(instructions: list[Instruction]) -> None:
    stage = final_stage(instructions)
    assert any(i.keyword == "EXPOSE" and "8501" in i.args.split() for i in stage)
    command = exec_form([i for i in stage if i.keyword == "CMD"][-1].args)
    assert command[:3] == ["streamlit", "run", "Home.py"]
    assert {"--server.port=8501", "--server.address=0.0.0.0", "--server.headless=true"} <= set(command)


def test_copies_only_the_console_and_nothing_secret(instructions: list[Instruction]) -> None:
    sources = [s for i in instructions if i.keyword in {"COPY", "ADD"} for s in copy_sources(i)]
    assert sources, "no COPY found"
    for source in sources:
        normalised = source.strip("/").removeprefix("./")
        assert normalised not in {"", "."}, "COPY of the whole build context"
        assert not SENSITIVE_SOURCE.search(normalised), f"sensitive file copied into the image: {source}"
        assert normalised.split("/")[0] not in NOT_IN_IMAGE, f"{source} does not belong in the console image"
        assert (ROOT / normalised).exists(), f"COPY source {source} does not exist"
        assert not ignored(normalised, ignore_patterns()), f"COPY source {source} is excluded by .dockerignore"
    assert not [i for i in instructions if i.keyword == "ADD"], "use COPY: ADD fetches URLs and unpacks archives"


def test_no_secret_or_backend_choice_baked_in(instructions: list[Instruction]) -> None:
    names = [n for i in instructions if i.keyword in {"ENV", "ARG"} for n in env_names(i)]
    assert not [n for n in names if SECRET_NAME.search(n)], names
    assert "SIGNAL_BACKEND" not in names
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert not re.search(r"AKIA[0-9A-Z]{16}", text), "an AWS access key id in the Dockerfile"


def test_installs_the_app_requirements_only(instructions: list[Instruction]) -> None:
    installs = [i for i in instructions if i.keyword == "RUN" and "pip" in i.args and "install" in i.args]
    assert installs
    copied = {  # destination in the image -> source in the build context
        exec_form(i.args)[-1]: copy_sources(i)[0]
        for i in instructions if i.keyword == "COPY" and len(copy_sources(i)) == 1
    }
    files: list[Path] = []
    for install in installs:
        words = shlex.split(install.args)
        for flag, value in itertools.pairwise(words):
            if flag in {"-r", "--requirement"}:
                files.append(ROOT / copied.get(value, value))
        files += [ROOT / copied.get(w.split("=", 1)[1], w.split("=", 1)[1]) for w in words
                  if w.startswith("--requirement=")]
    assert [f.name for f in files] == ["requirements.lock"]
    assert all("--require-hashes" in shlex.split(i.args) for i in installs), "an install that is not hash-checked"
    packages = set().union(*(requirement_names(f) for f in files))
    assert "streamlit" in packages
    assert not packages & DEV_ONLY_PACKAGES, packages & DEV_ONLY_PACKAGES


def test_dockerignore_keeps_local_state_and_secrets_out() -> None:
    patterns = ignore_patterns()
    for path in (".env", ".env.local", ".venv", "tests", ".signal_stream", ".git", "glue_job", "infra",
                 "dist", "core/__pycache__", "key.pem", ".streamlit/secrets.toml"):
        assert ignored(path, patterns), f".dockerignore lets {path} into the build context"
    for path in ("Home.py", "core/records.py", "pages/overview.py", ".streamlit/config.toml", "data/mobile_logs.csv"):
        assert not ignored(path, patterns), f".dockerignore drops {path}, which the image needs"


def test_console_code_does_not_import_spark_or_the_job_at_import_time() -> None:
    files = [ROOT / "Home.py"] + [p for folder in CONSOLE_SOURCES[1:] for p in (ROOT / folder).rglob("*.py")]
    offenders = []
    for path in files:
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            modules = []
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
            offenders += [f"{path.relative_to(ROOT)}: {m}" for m in modules if m.split(".")[0] in FORBIDDEN_IN_IMAGE]
    assert offenders == []
