"""A small Dockerfile and .dockerignore reader for the image tests (no Docker here).

Enough of the format for our own Dockerfile: comments, line continuations, stages,
ARG defaults before the first FROM, and exec-form (JSON) arguments.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Instruction:
    keyword: str   # upper case: FROM, RUN, COPY ...
    args: str      # the rest, continuations joined


@dataclass
class Stage:
    image: str     # after ARG substitution
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def instructions(text: str) -> list[Instruction]:
    out: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # comment lines inside a continued instruction are dropped
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole = (pending + line).strip()
        pending = ""
        keyword, _, args = whole.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip()))
    if pending:
        raise ValueError("Dockerfile ends inside a continued line")
    return out


def stages(text: str) -> list[Stage]:
    """The build stages in order; ARGs declared before the first FROM are substituted."""
    global_args: dict[str, str] = {}
    result: list[Stage] = []
    for ins in instructions(text):
        if ins.keyword == "FROM":
            parts = ins.args.split()
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)",
                           lambda m: global_args[m.group(1) or m.group(2)], parts[0])
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            result.append(Stage(image, name))
        elif not result:
            if ins.keyword == "ARG":
                key, _, default = ins.args.partition("=")
                global_args[key] = default
        else:
            result[-1].instructions.append(ins)
    return result


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        raise ValueError(f"not an exec-form (JSON array) argument: {args}")
    return value


def copy_parts(ins: Instruction) -> tuple[dict[str, str], list[str], str]:
    """COPY/ADD -> (--flags, sources, destination)."""
    words = ins.args.split()
    flags = {}
    while words and words[0].startswith("--"):
        key, _, value = words.pop(0)[2:].partition("=")
        flags[key] = value
    return flags, words[:-1], words[-1]


def env_names(ins: Instruction) -> list[str]:
    """ENV a=1 b=2 (or the legacy ENV a 1) -> names."""
    if "=" not in ins.args.split()[0]:
        return [ins.args.split()[0]]
    return [w.split("=", 1)[0] for w in ins.args.split() if "=" in w]


def dockerignore_excludes(patterns_text: str, path: str) -> bool:
    """Whether the build context leaves `path` out: the last matching pattern wins."""
    excluded = False
    for raw in patterns_text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/").removeprefix("**/")
        candidates = [path, *(p.as_posix() for p in Path(path).parents if p.as_posix() != ".")]
        if line.lstrip("!").startswith("**/"):
            candidates += [Path(c).name for c in candidates]
        if any(fnmatch.fnmatchcase(c, pattern) for c in candidates):
            excluded = not negate
    return excluded
