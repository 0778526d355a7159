"""Settings come from a mapping with flags laid over it; no command line writes its flags into ``os.environ``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from common.settings import Settings, SettingsError
from handlers import cli
from handlers.supervisor import sidecar_command
from sidecar import main as sidecar_main


def test_overrides_win_over_the_mapping_and_empty_ones_leave_it() -> None:
    env = {"GATEWAY_PORT": "9000", "GATEWAY_HOST": "127.0.0.2", "GATEWAY_DATA_DIR": "/srv/env-data"}
    settings = Settings.from_mapping(env, {"GATEWAY_PORT": "9100", "GATEWAY_HOST": None, "GATEWAY_DATA_DIR": ""})
    assert (settings.gateway_port, settings.gateway_host) == (9100, "127.0.0.2")
    assert settings.data_dir == Path("/srv/env-data")


def test_a_bad_override_is_named_like_a_bad_variable() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_mapping({"GATEWAY_PORT": "80"}, {"GATEWAY_PORT": "99999", "INSTANCE_COUNT": "0"})
    assert "GATEWAY_PORT: must be a port number" in str(caught.value)
    assert "INSTANCE_COUNT: must be at least 1" in str(caught.value)


def test_the_data_dir_and_socket_defaults_come_from_the_mapping_not_the_process(short_dir: Path) -> None:
    runtime = short_dir / "run"
    runtime.mkdir()
    env = {"HOME": str(short_dir / "home"), "XDG_RUNTIME_DIR": str(runtime)}
    settings = Settings.from_mapping(env)
    assert settings.data_dir == short_dir / "home" / ".local" / "share" / "lingma-gateway"
    assert settings.socket_path.parent == runtime and settings.socket_path.name.startswith("lingma-gateway-")
    xdg = Settings.from_mapping({"XDG_DATA_HOME": str(short_dir / "xdg")})
    assert xdg.data_dir == short_dir / "xdg" / "lingma-gateway"
    assert xdg.socket_path == short_dir / "xdg" / "lingma-gateway" / "sidecar.sock"


def test_serve_flags_reach_the_sidecars_settings_without_an_environment_write(tmp_path: Path) -> None:
    """The whole hand-over in process: ``serve``'s flags, the child's command line, the child's settings."""
    before = dict(os.environ)
    data, sock, scenario = tmp_path / "data", tmp_path / "s.sock", tmp_path / "scenario.json"
    argv = ["serve", "--simulator", "--port", "9123", "--data-dir", str(data), "--socket", str(sock)]
    argv += ["--scenario", str(scenario), "--allow-open"]
    args = cli._parser().parse_args(argv)
    env = {"HOME": str(tmp_path / "home"), "API_KEYS": "sk-not-on-argv"}
    serve = Settings.from_mapping(env, cli.flag_overrides(args))
    assert (serve.gateway_port, serve.gateway_allow_open, serve.data_dir) == (9123, True, data)

    cmd = sidecar_command(serve, simulator=True)
    assert cmd[1:3] == ["-m", "sidecar"] and not any("sk-not-on-argv" in part for part in cmd)
    child_args = sidecar_main.parse_args(cmd[3:])
    overrides = sidecar_main.flag_overrides(
        data_dir=child_args.data_dir, socket=child_args.socket, simulator=child_args.simulator,
        scenario=child_args.scenario,
    )  # fmt: skip
    child = Settings.from_mapping({"HOME": str(tmp_path / "elsewhere")}, overrides)
    assert (child.data_dir, child.socket_path, child.lingma_sim_scenario) == (data, sock, str(scenario))
    assert Path(child.lingma_bin).name == "lingma-sim"
    assert dict(os.environ) == before


def test_ping_reads_its_socket_flag_without_writing_the_environment(tmp_path: Path) -> None:
    before = dict(os.environ)
    sock = tmp_path / "nobody.sock"
    assert cli.main(["ping", "--socket", str(sock)]) != 0
    assert dict(os.environ) == before
    assert os.environ.get("GATEWAY_SOCKET") != str(sock)
