"""Config: defaults equal the shipped config.yaml, errors name key + file:line, overrides apply in order."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field

from phototag.config import Config, PluginSettings, load_config, parse_overrides
from phototag.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_shipped_config_is_valid_and_equals_defaults() -> None:
    shipped = load_config(ROOT / "config.yaml", environ={})
    defaults = load_config(None, environ={})
    ignore = {"source", "lines", "plugins"}
    assert shipped.model_dump(exclude=ignore) == defaults.model_dump(exclude=ignore)


def test_shipped_config_is_generated_from_the_settings_models() -> None:
    from phototag.configdoc import PLUGIN_SECTIONS, render_default_config

    text = (ROOT / "config.yaml").read_text()
    assert text == render_default_config(), "config.yaml is stale: phototag config --defaults > config.yaml"
    shipped = load_config(ROOT / "config.yaml", environ={})
    from phototag.plugins._dispatch import import_string

    for name, dotted, enabled, _ in PLUGIN_SECTIONS:
        cls = import_string(dotted)
        assert shipped.plugin_enabled(name) is enabled
        settings = shipped.plugin_settings(name, cls.Settings)
        assert settings.model_dump(exclude={"enabled"}) == cls.Settings().model_dump(exclude={"enabled"})


def test_unknown_key_names_key_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "device: auto\nmetadata:\n  mode: sidecar\n  keyword_rot: AI\n")
    with pytest.raises(ConfigError) as e:
        load_config(path, environ={})
    assert e.value.key == "metadata.keyword_rot"
    assert f"{path}:4" in str(e.value)
    assert "unknown key" in str(e.value)


def test_wrong_type_and_bad_choice(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, "batch_size: lots\n"), environ={})
    assert "batch_size" in str(e.value) and ":1" in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, "metadata:\n  mode: embedd\n"), environ={})
    assert "'sidecar' or 'embed'" in str(e.value) and "config.yaml:2" in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, "device: tpu\n"), environ={})
    assert "cuda:N" in str(e.value)


def test_not_yaml_and_not_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "device: [auto\n"), environ={})
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"), environ={})
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml", environ={})


def test_overrides_env_then_cli(tmp_path: Path) -> None:
    path = write(tmp_path, "metadata:\n  mode: sidecar\nbatch_size: 4\n")
    env = {"PHOTOTAG_METADATA__MODE": "embed", "PHOTOTAG_BATCH_SIZE": "16"}
    config = load_config(path, overrides=parse_overrides(["batch_size=2"]), environ=env)
    assert config.metadata.mode == "embed"
    assert config.batch_size == 2
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["metadata.mode"])


def test_override_errors_name_the_override_not_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "metadata:\n  mode: sidecar\nplugins:\n  demo:\n    threshold: 0.2\n")
    with pytest.raises(ConfigError) as e:
        load_config(path, overrides={"metadata.mode": "embedd"}, environ={})
    assert str(e.value).startswith("--set: metadata.mode: ")
    with pytest.raises(ConfigError) as e:
        load_config(path, environ={"PHOTOTAG_BATCH_SIZE": "lots"})
    assert str(e.value).startswith("PHOTOTAG_BATCH_SIZE: batch_size: ")
    # --set wins over the environment, and so does its name in the message
    with pytest.raises(ConfigError) as e:
        load_config(path, {"batch_size": "many"}, environ={"PHOTOTAG_BATCH_SIZE": "lots"})
    assert str(e.value).startswith("--set: batch_size: ") and "'many'" in str(e.value)
    # a plugin section replaced by an override: the override, not the file's old line
    config = load_config(path, environ={"PHOTOTAG_PLUGINS__DEMO": "{threshold: 7}"})
    with pytest.raises(ConfigError) as e:
        config.plugin_settings("demo", DemoSettings)
    assert str(e.value).startswith("PHOTOTAG_PLUGINS__DEMO: plugins.demo.threshold: ")
    with pytest.raises(ConfigError) as e:
        load_config(path, {"metadata.mode.x": "1"}, environ={})
    assert str(e.value).startswith("--set: metadata.mode.x: cannot set a key below a non-mapping")
    with pytest.raises(ConfigError) as e:
        load_config(None, {"metadata.mode.x": "1"}, environ={})
    assert str(e.value).startswith("--set: metadata.mode: ")  # the override made it a mapping


@pytest.mark.parametrize(
    ("key", "noun"),
    [("folders", "folders"), ("exclude", "glob patterns"), ("image.extensions", "file extensions"),
     ("watch.poll_folders", "folders")],
)  # fmt: skip
def test_one_value_where_a_list_belongs_says_so(key: str, noun: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(None, overrides={key: "x"}, environ={})
    assert f"{key}: should be a list of {noun} (for just one: [x]), got 'x'" in str(e.value)
    assert load_config(None, overrides={key: "[x]"}, environ={})  # the fix the message suggests works
    path = write(tmp_path, "folders: /x\n")
    with pytest.raises(ConfigError, match=rf"{path}:1: folders: should be a list of folders"):
        load_config(path, environ={})


def test_paths_expand_user(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "state_db: ~/x/state.db\nfolders: [~/Pictures]\n"), environ={})
    assert config.state_db == Path.home() / "x" / "state.db"
    assert config.folders == (Path.home() / "Pictures",)


class DemoSettings(PluginSettings):
    threshold: float = Field(0.5, ge=0, le=1)


def test_plugin_reads_its_own_section_with_line_numbers(tmp_path: Path) -> None:
    path = write(tmp_path, "plugins:\n  demo:\n    threshold: 0.2\n  other:\n    threshold: 7\n")
    config = load_config(path, environ={})
    assert config.plugin_settings("demo", DemoSettings).threshold == 0.2
    assert config.plugin_settings("absent", DemoSettings).threshold == 0.5
    with pytest.raises(ConfigError) as e:
        config.plugin_settings("other", DemoSettings)
    assert e.value.key == "plugins.other.threshold"
    assert f"{path}:5" in str(e.value)


def test_config_is_frozen() -> None:
    config = Config()
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises ValidationError for frozen models
        config.batch_size = 3  # type: ignore[misc]
