"""The bad-input corpus: for every input the system takes, cases of bad input, each with the
error it must produce and where the input must end up (docs/bad-input.md).

Cases live in one YAML manifest per kind of input (`events.yaml`, `bank-messages.yaml`, ...),
data files beside them. A case:

    - id: amount-float                        # unique
      kind: event                             # one of KINDS
      why: a float is not integer minor units, not even 1000.0
      input: {patch: {amount_minor: 1000.0}}  # see Case.value() and Case.argv()
      expect: {dlq: amount_minor_not_integer_minor_units,
               error: "amount_minor: Input should be a valid integer"}

`expect` holds `error` (a substring of the clear error: the DLQ detail, the parked detail,
or stderr) and the destination: `dlq` (reason), `parked` (reason) or `exit` (code).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent
KINDS = ("event", "pacs.002", "pacs.004", "camt.054", "camt.053", "cli", "config",
         "merchants-import")
BANK_KINDS = ("pacs.002", "pacs.004", "camt.054", "camt.053")
VALID_EVENT = ROOT / "events" / "valid.json"
DESTINATIONS = ("dlq", "parked", "exit")


@dataclass(frozen=True)
class Case:
    id: str
    kind: str
    why: str
    input: dict[str, Any]
    expect: dict[str, Any]
    manifest: str
    integration: bool = True  # false: needs state the real-stack test does not set up

    @property
    def error(self) -> str:
        return str(self.expect["error"])

    # -- record inputs (events and bank messages) ---------------------------------------

    def value(self) -> bytes | None:
        """The record value: `tombstone` (None), `hex`, `text`, `file`, or `base` (a data file) with
        `replace` ({old: new}, each old must occur) and `repeat` ({token: [unit, times]});
        for events also `patch` ({field: value}) and `drop` ([field]) on events/valid.json."""
        return _value(self.input)

    def before(self) -> list[bytes | None]:
        """Records delivered (and accepted) just before this one, e.g. the first of a conflict;
        they carry the case's key, so they are in its partition, in order."""
        return [_value(spec) for spec in self.input.get("before", [])]

    def key(self) -> bytes | None:
        if "key_hex" in self.input:
            return bytes.fromhex(self.input["key_hex"])
        if "key_repeat" in self.input:
            unit, times = self.input["key_repeat"]
            return str(unit).encode() * int(times)
        key = self.input.get("key")
        return None if key is None else str(key).encode()

    # -- command inputs (cli, config, merchants-import) ---------------------------------

    def argv(self, tmp: Path) -> list[str]:
        """`args`, with `@name` standing for a data file: `files` ({name: text}) written to
        `tmp`, or a file of the corpus (`@merchants/x.csv`)."""
        written = {}
        for name, text in self.input.get("files", {}).items():
            path = tmp / name
            path.write_bytes(text.encode() if isinstance(text, str) else bytes(text))
            written[name] = path
        out = []
        for arg in self.input.get("args", []):
            arg = str(arg)
            if arg.startswith("@"):
                name = arg[1:]
                arg = str(written[name] if name in written else ROOT / name)
            out.append(arg)
        return out

    def env(self) -> dict[str, str]:
        return {k: str(v) for k, v in self.input.get("env", {}).items()}


def _value(spec: dict[str, Any]) -> bytes | None:
    if spec.get("tombstone"):
        return None
    if "hex" in spec:
        return bytes.fromhex(spec["hex"])
    if "text" in spec:
        data = str(spec["text"]).encode()
    elif "patch" in spec or "drop" in spec or spec.get("valid_event"):
        event = json.loads(VALID_EVENT.read_text())
        for name in spec.get("drop", []):
            del event[name]
        event.update(spec.get("patch", {}))
        data = json.dumps(event).encode()
    else:
        data = (ROOT / spec.get("file", spec.get("base", ""))).read_bytes()
    for old, new in spec.get("replace", {}).items():
        if old.encode() not in data:
            raise ValueError(f"replace: {old!r} does not occur in the input")
        data = data.replace(old.encode(), str(new).encode(), 1)
    for token, (unit, times) in spec.get("repeat", {}).items():
        data = data.replace(token.encode(), str(unit).encode() * int(times))
    if "cut_at" in spec:  # truncate: an int, or the text to cut before
        cut = spec["cut_at"]
        data = data[:cut] if isinstance(cut, int) else data[:data.index(str(cut).encode())]
    return data


def load() -> list[Case]:
    """Every case of every manifest, checked for shape (a broken manifest fails loudly)."""
    cases: list[Case] = []
    for manifest in sorted(ROOT.glob("*.yaml")):
        for raw in yaml.safe_load(manifest.read_text(encoding="utf-8")) or []:
            unknown = set(raw) - {"id", "kind", "why", "input", "expect", "integration"}
            if unknown:
                raise ValueError(f"{manifest.name}: case {raw.get('id')}: unknown keys {unknown}")
            case = Case(id=raw["id"], kind=raw["kind"], why=raw["why"], input=raw["input"],
                        expect=raw["expect"], manifest=manifest.name,
                        integration=raw.get("integration", True))
            if case.kind not in KINDS:
                raise ValueError(f"{manifest.name}: case {case.id}: kind {case.kind!r} not in {KINDS}")
            if not case.why or "error" not in case.expect or not any(
                    d in case.expect for d in DESTINATIONS):
                raise ValueError(f"{manifest.name}: case {case.id}: needs why, expect.error and "
                                 f"one of expect.{'|'.join(DESTINATIONS)}")
            cases.append(case)
    ids = [c.id for c in cases]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        raise ValueError(f"duplicate case ids: {sorted(dup)}")
    return cases


def of_kind(*kinds: str) -> list[Case]:
    return [c for c in load() if c.kind in kinds]
