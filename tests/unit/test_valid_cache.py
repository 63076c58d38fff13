"""Settings that passed their schema are not checked again (jsonschema costs ~60 ms to load)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clave import config
from clave.errors import ConfigError
from clave.home import Home
from clave.valid_cache import LIMIT, ValidCache

ROOT = Path(__file__).resolve().parents[2]


def test_an_added_key_is_found_and_another_is_not(tmp_path):
    cache = ValidCache(tmp_path / "cache" / "valid")
    key = cache.key("user", {"vm": {"cpus": 4}})
    assert key not in cache
    cache.add(key)
    assert key in ValidCache(tmp_path / "cache" / "valid")
    assert cache.key("user", {"vm": {"cpus": 5}}) not in cache


def test_only_the_newest_entries_are_kept(tmp_path):
    cache = ValidCache(tmp_path / "valid")
    keys = [cache.key(n) for n in range(LIMIT + 5)]
    for key in keys:
        cache.add(key)
    assert keys[0] not in cache and keys[-1] in cache
    assert len((tmp_path / "valid").read_text().split()) == LIMIT


def test_a_home_that_cannot_be_written_only_means_checking_again(tmp_path):
    (tmp_path / "file").write_text("")
    cache = ValidCache(tmp_path / "file" / "valid")     # its parent is a file
    cache.add(cache.key("x"))
    assert cache.key("x") not in cache


def test_a_bad_value_is_refused_every_time_even_after_a_good_one(monkeypatch):
    monkeypatch.setenv("CLAVE_VM_CPUS", "4")
    config.load(Path.cwd())
    monkeypatch.setenv("CLAVE_VM_CPUS", "0")
    for _ in range(2):
        with pytest.raises(ConfigError, match="CLAVE_VM_CPUS"):
            config.load(Path.cwd())


def test_a_home_that_does_not_exist_is_not_made_for_the_cache(tmp_path, monkeypatch):
    home = tmp_path / "never-used"
    monkeypatch.setenv("CLAVE_HOME", str(home))
    monkeypatch.setenv("CLAVE_VM_CPUS", "4")
    assert config.load(Path.cwd()).get("vm.cpus") == 4
    assert not home.exists()


def test_settings_that_passed_once_load_without_jsonschema(tmp_path):
    Home.from_env().ensure()                # a home clave has used before
    project = tmp_path / "app"
    project.mkdir()
    (project / ".clave.json").write_text(json.dumps({"vm": {"cpus": 2}}))
    probe = ("import sys; from pathlib import Path; from clave import config; "
             "s = config.load(Path.cwd()); "
             "print(s.get('vm.cpus'), s.get('vm.memory'), 'jsonschema' in sys.modules)")
    env = {**os.environ, "CLAVE_VM_MEMORY": "2048", "PYTHONPATH": str(ROOT)}

    def load() -> str:
        return subprocess.run([sys.executable, "-c", probe], cwd=project, env=env, text=True,
                              capture_output=True, check=True).stdout.strip()

    assert load() == "2 2048 True"      # checked, and remembered
    assert load() == "2 2048 False"     # the same file and variable: not checked again
    (project / ".clave.json").write_text(json.dumps({"vm": {"cpus": 3}}))
    assert load() == "3 2048 True"      # a changed file is checked afresh
