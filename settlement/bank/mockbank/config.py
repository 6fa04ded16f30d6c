"""Mock bank configuration: one YAML file, one or more banks, each with its fault profile.

`load(path)` expands `${VAR}` and `${VAR:-default}` in string values (tokens come from the
environment in real use), then validates into frozen pydantic models. `env` is a parameter
so the CLI edge is the only place that reads os.environ.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import time
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from settlement.domain.errors import ConfigError
from settlement.domain.money import is_known_currency

_FROZEN = ConfigDict(frozen=True, extra="forbid")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
DEFAULT_REJECT_REASONS = ("AC01", "AC04", "AC06", "AM04", "BE04", "RC01")


class ProcessorAccount(BaseModel):
    """The processor's settlement (debtor) account at this bank, one per currency."""

    model_config = _FROZEN

    id: str = Field(min_length=1, max_length=34)
    currency: str
    balance_minor: int = Field(default=0, description="Opening balance in minor units (signed).")

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        if not is_known_currency(value):
            raise ValueError(f"unknown ISO 4217 currency {value!r}")
        return value


class MerchantAccount(BaseModel):
    """A creditor account held at this bank."""

    model_config = _FROZEN

    id: str = Field(min_length=1, max_length=34)
    currency: str | None = Field(default=None, description="None = any currency.")
    closed: bool = False
    blocked: bool = False
    balance_minor: int = 0


class FaultProfile(BaseModel):
    """How the bank misbehaves; every draw is seeded, so a run can be replayed."""

    model_config = _FROZEN

    seed: int = 0
    reject_rate: float = Field(default=0.0, ge=0, le=1)
    reject_reasons: tuple[str, ...] = DEFAULT_REJECT_REASONS
    latency_ms: tuple[int, int] = (0, 0)
    error_5xx_rate: float = Field(default=0.0, ge=0, le=1)
    timeout_rate: float = Field(default=0.0, ge=0, le=1)
    timeout_sleep_s: float = Field(default=35.0, ge=0, description="How long a 'timeout' stalls.")
    drop_rate: float = Field(default=0.0, ge=0, le=1)
    duplicate_msgid: Literal["repeat", "refuse"] = "repeat"
    return_rate: float = Field(default=0.0, ge=0, le=1)
    return_after_business_days: int = Field(default=2, ge=0, le=30)
    return_reasons: tuple[str, ...] = ("AC04", "MD07")
    down: bool = False

    @field_validator("reject_reasons", "return_reasons")
    @classmethod
    def _codes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value or any(not 1 <= len(code) <= 4 for code in value):
            raise ValueError("reason lists need at least one code of 1..4 characters")
        return value

    @field_validator("latency_ms")
    @classmethod
    def _latency(cls, value: tuple[int, int]) -> tuple[int, int]:
        if not 0 <= value[0] <= value[1]:
            raise ValueError("latency_ms is [min, max] with 0 <= min <= max")
        return value


class BankConfig(BaseModel):
    """One simulated bank."""

    model_config = _FROZEN

    bic: str = Field(pattern=r"^[A-Z0-9]{4}[A-Z]{2}[A-Z0-9]{2}([A-Z0-9]{3})?$")
    name: str = ""
    token: SecretStr
    signing_key: SecretStr | None = Field(
        default=None, description="When set, every answer carries X-Bank-Signature: "
        "sha256=HMAC(key, body), for the gateway to check.")
    timezone: str = "Europe/Berlin"
    booking_time: time = Field(default=time(9, 0), description="Local time settlements are booked.")
    processor_accounts: tuple[ProcessorAccount, ...] = Field(min_length=1)
    accounts: tuple[MerchantAccount, ...] = ()
    accept_unknown_accounts: bool = False
    faults: FaultProfile = Field(default_factory=FaultProfile)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _one_processor_account_per_currency(self) -> BankConfig:
        currencies = [a.currency for a in self.processor_accounts]
        if len(currencies) != len(set(currencies)):
            raise ValueError(f"{self.bic}: one processor account per currency")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class ClockConfig(BaseModel):
    model_config = _FROZEN

    start: AwareDatetime | None = Field(default=None, description="None = the real now.")
    follow_real_time: bool = Field(default=True, description="False = moves only via /admin/clock.")


class MockBankConfig(BaseModel):
    model_config = _FROZEN

    state_dir: Path = Path(".mockbank")
    max_body_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    clock: ClockConfig = Field(default_factory=ClockConfig)
    banks: tuple[BankConfig, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_bics(self) -> MockBankConfig:
        bics = [b.bic for b in self.banks]
        if len(bics) != len(set(bics)):
            raise ValueError("bank BICs must be unique")
        return self

    def bank(self, bic: str) -> BankConfig | None:
        return next((b for b in self.banks if b.bic == bic), None)


def expand_env(value: Any, env: Mapping[str, str]) -> Any:
    """`${VAR}` / `${VAR:-default}` replaced in every string of a parsed YAML tree."""
    if isinstance(value, str):
        def _sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is None:
                raise ConfigError(f"environment variable {name} is not set and has no default")
            return default
        return _ENV_REF.sub(_sub, value)
    if isinstance(value, list):
        return [expand_env(v, env) for v in value]
    if isinstance(value, dict):
        return {k: expand_env(v, env) for k, v in value.items()}
    return value


def parse(data: Mapping[str, Any], env: Mapping[str, str] | None = None,
          base_dir: Path | None = None) -> MockBankConfig:
    """Validate an already-loaded mapping (env-expanded); a relative state_dir is under base_dir."""
    config = MockBankConfig.model_validate(expand_env(dict(data), os.environ if env is None else env))
    if base_dir is not None and not config.state_dir.is_absolute():
        config = config.model_copy(update={"state_dir": base_dir / config.state_dir})
    return config


def load(path: Path | str, env: Mapping[str, str] | None = None) -> MockBankConfig:
    """Read and validate a YAML config; relative state_dir is taken from the current directory."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read mock bank config {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return parse(data, env)

