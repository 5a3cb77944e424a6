"""`notify.apprise`: each URL checked by Apprise itself at load, a clear error without the
extra, and the URLs masked wherever the config is shown."""

from __future__ import annotations

import logging
import sys
from argparse import Namespace
from pathlib import Path

import pytest

import hbsm.config
from hbsm.config import ConfigError, load_config
from hbsm.config import command as config_command

pytest.importorskip("apprise")

GOOD = "json://127.0.0.1:8080/hooks/s3cr3t-path"
TGRAM = "tgram://123456789:AAbbCCddEEff/-100200300"


def notify(*urls: str, extra: str = "") -> str:
    listed = ", ".join(f'"{url}"' for url in urls)
    return f"[notify]\napprise = [{listed}]\n{extra}"


def test_urls_apprise_reads_load(write):
    loaded = load_config(write(notify(GOOD, TGRAM, "form://example.com/path")), env={})
    assert loaded.config.notify.apprise == [GOOD, TGRAM, "form://example.com/path"]
    assert loaded.config.notify.apprise_timeout == 30.0


@pytest.mark.parametrize(
    ("bad", "index"),
    [
        ("nonsense://abc/def", 1),  # a scheme no Apprise service has
        ("tgram://", 1),  # the bot token missing
        ("  ", 1),
    ],
)
def test_a_url_apprise_cannot_use_is_an_error_naming_its_index(write, bad, index):
    path = write(notify(GOOD, bad))
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    error = caught.value
    assert error.key == f"notify.apprise[{index}]"
    assert str(error).startswith(f"{path}: notify.apprise[{index}]: ")


def test_the_error_shows_the_url_masked(write):
    with pytest.raises(ConfigError) as caught:
        load_config(write(notify("nonsense://s3cr3t-token/more")), env={})
    assert "nonsense://***" in str(caught.value)
    assert "s3cr3t-token" not in str(caught.value)


def test_without_the_extra_the_error_says_what_to_install(write, monkeypatch):
    # None in sys.modules makes `import apprise` fail as it does where the extra is missing.
    monkeypatch.setitem(sys.modules, "apprise", None)
    path = write(notify(GOOD))
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert caught.value.key == "notify.apprise"
    assert "pip install 'hbsm[apprise]'" in str(caught.value)
    assert str(caught.value).startswith(f"{path}: notify.apprise: ")


def test_without_the_extra_a_config_naming_no_apprise_url_loads(write, monkeypatch):
    monkeypatch.setitem(sys.modules, "apprise", None)
    assert load_config(write("[notify]\nrate_per_hour = 5\n"), env={}).config.notify.apprise == []


def test_timeout_must_be_positive(write):
    with pytest.raises(ConfigError) as caught:
        load_config(write(notify(GOOD, extra="apprise_timeout = 0\n")), env={})
    assert caught.value.key == "notify.apprise_timeout"


@pytest.mark.parametrize("as_json", [False, True])
def test_hbsm_config_shows_them_masked(write, capsys, as_json):
    path = write(notify(GOOD, TGRAM))
    args = Namespace(check=None, config_file=str(path), json=as_json)
    assert config_command.run(args, env={}) == 0
    out = capsys.readouterr().out
    assert "json://127.0.0.1:8080/***" in out and "tgram://***" in out
    assert "s3cr3t-path" not in out and "AAbbCCddEEff" not in out and "100200300" not in out


def test_the_examples_commented_urls_load(write):
    """The Apprise URLs hbsm/config/example.toml shows (commented out) are ones Apprise reads."""
    example = Path(hbsm.config.__file__).parent / "example.toml"
    [line] = [ln for ln in example.read_text().splitlines() if ln.startswith("# apprise = ")]
    loaded = load_config(write("[notify]\n" + line.removeprefix("# ") + "\n"), env={})
    assert len(loaded.config.notify.apprise) == 2


def test_the_readmes_notify_example_loads(write):
    """The [notify] example of the README's notifications section is a config hbsm reads."""
    readme = (Path(hbsm.config.__file__).parents[2] / "README.md").read_text()
    section = readme.split("### Notifications: webhooks, e-mail, Apprise", 1)[1]
    block = section.split("```toml\n", 1)[1].split("```", 1)[0]
    notify = load_config(write(block), env={}).config.notify
    assert len(notify.apprise) == 2 and len(notify.webhooks) == 1 and notify.smtp is not None


def test_checking_the_urls_logs_none_of_their_secrets(write, caplog):
    with caplog.at_level(logging.DEBUG, logger="apprise"):
        load_config(write(notify(GOOD, TGRAM)), env={})
    assert any("URL" in r.getMessage() for r in caplog.records), "Apprise named no URL"
    assert "s3cr3t-path" not in caplog.text and "AAbbCCddEEff" not in caplog.text
