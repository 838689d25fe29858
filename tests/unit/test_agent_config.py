"""The agent's configuration file, its private token file and the report spool.
(Its HTTP session and error sorting are tested with the SDK: test_client_sdk.py.)"""

import pytest

from edgefarm.agent.config import (
    AgentConfig,
    ConfigError,
    dump_config,
    load_config,
    save_config,
    write_secret,
)
from edgefarm.agent.spool import Spool
from edgefarm.shared.contract.schemas import RunReport


def test_config_round_trip_and_unknown_keys(tmp_path):
    config = AgentConfig(server_url="http://farm:8000", labels=["lab2"], threads=4,
                         runtime_options={"tflite": {"delegate": "/usr/lib/x.so"}})
    path = tmp_path / "agent.toml"
    save_config(config, path)
    loaded = load_config(path)
    assert loaded == config
    path.write_text("colour = 'red'\n" + dump_config(config))
    with pytest.raises(ConfigError, match="colour"):
        load_config(path)
    with pytest.raises(ConfigError, match="enroll"):
        load_config(tmp_path / "missing.toml")


def test_thermal_and_repetition_tables_round_trip_and_are_checked(tmp_path):
    config = AgentConfig(server_url="http://farm:8000",
                         thermal={"sysfs_root": "/tmp/fake", "start_temp_c": 55.0, "expected_governor": "performance"},
                         repetition={"cv_reruns": 1})
    path = tmp_path / "agent.toml"
    save_config(config, path)
    assert "[thermal]" in path.read_text() and load_config(path) == config
    for table, message in (("[thermal]\nstart_temp = 55\n", "unknown keys start_temp"),
                           ("[thermal]\ncooldown_seconds = -1\n", "cooldown_seconds must not be negative"),
                           ("[repetition]\ncv_reruns = 99\n", "cv_reruns must be an integer")):
        path.write_text(dump_config(AgentConfig(server_url="http://farm:8000")) + table)
        with pytest.raises(ConfigError, match=message):
            load_config(path)


def test_token_file_is_private(tmp_path):
    path = tmp_path / "state" / "agent.token"
    write_secret(path, "ef_1_secret")
    assert path.stat().st_mode & 0o777 == 0o600
    assert AgentConfig(token_file=str(path)).read_token() == "ef_1_secret"


def test_spool_survives_and_clears(tmp_path):
    spool = Spool(tmp_path / "spool")
    report = RunReport(lease_id="l1", state="failed", error="boom")
    spool.put(7, report)
    again = Spool(tmp_path / "spool")  # a restarted agent
    [(path, run_id, loaded)] = list(again.pending())
    assert run_id == 7 and loaded == report
    again.done(path)
    assert len(again) == 0
