"""Inline tox plugin: let several tox environments share one environment directory."""

from __future__ import annotations

from typing import Any

from tox.plugin import impl
from tox.tox_env.info import Info
from tox.tox_env.python.virtual_env.runner import VirtualEnvRunner
from tox.tox_env.register import ToxEnvRegister


class _SharedInfo(Info):
    """The environment's setup record, with the owning env's name left out of the runner check."""

    def compare(self, value: Any, section: str, sub_section: str | None = None):
        if section == "ToxEnv" and isinstance(value, dict):
            value = {key: item for key, item in value.items() if key != "name"}
        return super().compare(value, section, sub_section)


class SharedVirtualEnvRunner(VirtualEnvRunner):
    """A virtualenv runner that several named tox environments can share (same deps, one install)."""

    @staticmethod
    def id() -> str:
        return "shared-virtualenv"

    @property
    def cache(self) -> Info:
        return _SharedInfo(self.env_dir)


@impl
def tox_register_tox_env(register: ToxEnvRegister) -> None:
    register.add_run_env(SharedVirtualEnvRunner)
