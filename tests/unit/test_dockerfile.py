"""The image recipe, read structurally: there is no Docker engine to build it here."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path, PurePosixPath

import pytest

from tests.unit.dockerfile import (
    Stage,
    copy_parts,
    dockerignore_excludes,
    env_names,
    exec_form,
    instructions,
    stages,
)

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
DOCKERIGNORE = (ROOT / ".dockerignore").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SECRETISH = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE|CREDENTIAL", re.IGNORECASE)


@pytest.fixture(scope="module")
def runtime() -> Stage:
    return stages(DOCKERFILE)[-1]


def test_the_image_is_built_in_named_stages_from_the_supported_python() -> None:
    all_stages = stages(DOCKERFILE)
    assert len(all_stages) >= 2, "multi-stage: build tools stay out of the runtime image"
    assert all(s.name for s in all_stages), "every stage is named (COPY --from=<name>)"
    minimum = re.fullmatch(r">=(\d+\.\d+)", PYPROJECT["project"]["requires-python"])
    assert minimum is not None
    assert all_stages[-1].image == f"python:{minimum.group(1)}-slim"
    assert all(s.image == all_stages[-1].image for s in all_stages), \
        "the builder's venv is copied: both stages need the same Python at the same path"


def test_the_builder_makes_a_wheel_and_the_runtime_only_copies_its_result(runtime: Stage) -> None:
    builder = stages(DOCKERFILE)[0]
    run = " ".join(i.args for i in builder.all("RUN"))
    assert "pip wheel" in run and "settlement-*.whl" in run
    assert all("pip" not in i.args for i in runtime.all("RUN")), "the runtime installs nothing"
    from_builder = [copy_parts(i) for i in runtime.all("COPY") if copy_parts(i)[0].get("from")]
    assert [flags["from"] for flags, _, _ in from_builder] == [builder.name]


def test_the_runtime_runs_as_a_numeric_non_root_user(runtime: Stage) -> None:
    users = runtime.all("USER")
    assert users, "the runtime stage sets USER"
    uid, _, gid = users[-1].args.partition(":")
    assert uid.isdigit() and int(uid) >= 10000, "numeric uid, so runAsNonRoot can be verified"
    assert not gid or (gid.isdigit() and int(gid) != 0)


def test_the_entrypoint_is_the_settlement_command(runtime: Stage) -> None:
    (entrypoint,) = runtime.all("ENTRYPOINT")
    assert exec_form(entrypoint.args) == ["settlement"]  # exec form: SIGTERM reaches the worker
    assert "settlement" in PYPROJECT["project"]["scripts"]


def test_no_secret_is_baked_into_the_image() -> None:
    for ins in instructions(DOCKERFILE):
        if ins.keyword in ("ENV", "ARG", "LABEL"):
            names = env_names(ins) if ins.keyword != "ARG" else [ins.args.split("=")[0]]
            assert not [n for n in names if SECRETISH.search(n)], ins
        if ins.keyword in ("COPY", "ADD"):
            _, sources, _ = copy_parts(ins)
            assert not [s for s in sources if re.search(r"\.env|secret|\.pem|\.key", s)], ins
            assert not (ins.keyword == "ADD" and "://" in ins.args), "no remote ADD"


def test_the_xsds_are_where_the_installed_package_looks_for_them(runtime: Stage) -> None:
    # settlement/iso20022/xsd.py walks up from the installed module to a schemas/iso20022.
    copies = [copy_parts(i) for i in runtime.all("COPY")]
    venvs = [PurePosixPath(dest) for flags, _, dest in copies if flags.get("from")]
    xsds = [PurePosixPath(dest) for flags, src, dest in copies
            if not flags.get("from") and src == ["schemas/iso20022"]]
    assert len(xsds) == 1 and xsds[0].parts[-2:] == ("schemas", "iso20022")
    home = xsds[0].parent.parent
    assert any(home in v.parents for v in venvs), f"{home} is not above the venv {venvs}"


def test_the_build_context_holds_only_what_the_image_needs() -> None:
    for own in (".venv/bin/python", ".infra/kafka/lib/x.jar", ".git/config", ".tools/bin/kustomize",
                ".demo/logs/a.log", "tests/conftest.py", "k8s/overlays/dev/secrets.env",
                "settlement/__pycache__/config.cpython-311.pyc"):
        assert dockerignore_excludes(DOCKERIGNORE, own), own
    for ins in instructions(DOCKERFILE):
        if ins.keyword != "COPY" or copy_parts(ins)[0].get("from"):
            continue
        for src in copy_parts(ins)[1]:
            probe = f"{src}/x.py" if (ROOT / src).is_dir() else src
            assert (ROOT / src).exists(), src
            assert not dockerignore_excludes(DOCKERIGNORE, probe), f"{src} is not in the context"


def test_the_reader_sees_continued_lines_and_stages() -> None:
    text = "ARG BASE=python:3.11-slim\nFROM ${BASE} AS b\nRUN a \\\n  # note\n  && b\nFROM b AS r\nUSER 1:1\n"
    parsed = stages(text)
    assert [(s.image, s.name) for s in parsed] == [("python:3.11-slim", "b"), ("b", "r")]
    assert parsed[0].instructions[0].args == "a  && b"
    assert dockerignore_excludes("*\n!src/\n", "src/a.py") is False
    assert dockerignore_excludes("*\n!src/\n", "other/a.py") is True
