"""With no services configured, hbsm monitors what the original feature did."""

from __future__ import annotations

import pytest

from hbsm.config import load_config


def _services(loaded):
    return {s.name: s for s in loaded.config.services}


def test_no_file_monitors_its_own_health_and_no_login_page_of_its_own():
    loaded = load_config(env={})
    services = _services(loaded)
    # A standalone hbsm has no /login: the login page is watched only when there is one.
    assert list(services) == ["main_service"]
    main = services["main_service"]
    assert (main.url, main.critical, main.description) == (
        "http://127.0.0.1:5000/health",
        True,
        "the monitor's own API",
    )
    # hbsm cannot restart itself: diagnose only.
    assert loaded.policies["main_service"].ladder == ("diagnose",)
    assert main.restart.kind == "none"
    assert loaded.sources["services.main_service.url"] == "default"


def test_the_login_page_is_watched_when_embedded_or_configured():
    for loaded, url in (
        (load_config(env={}, embedded_login_url="http://127.0.0.1:8000/login"),
         "http://127.0.0.1:8000/login"),
        (load_config(env={"HEARTBEAT_LOGIN_URL": "https://example.test/login"}),
         "https://example.test/login"),
    ):  # fmt: skip
        login = _services(loaded)["login_page"]
        assert (login.url, login.critical, login.description) == (url, False, "admin login page")
        assert loaded.policies["login_page"].ladder == ("diagnose",)


def test_urls_follow_host_and_port_from_the_environment():
    loaded = load_config(env={"HEARTBEAT_HOST": "10.1.2.3", "HEARTBEAT_PORT": "8080"})
    services = _services(loaded)
    assert services["main_service"].url == "http://10.1.2.3:8080/health"
    assert "login_page" not in services


@pytest.mark.parametrize(
    ("host", "base"),
    [
        ("0.0.0.0", "http://127.0.0.1:5000"),
        ("::", "http://[::1]:5000"),
        ("::1", "http://[::1]:5000"),
    ],
)
def test_wildcard_and_ipv6_hosts_are_probed_over_loopback(host, base):
    loaded = load_config(env={"HEARTBEAT_HOST": host})
    assert _services(loaded)["main_service"].url == f"{base}/health"


def test_heartbeat_login_url():
    loaded = load_config(env={"HEARTBEAT_LOGIN_URL": "https://admin.example.com/login"})
    assert _services(loaded)["login_page"].url == "https://admin.example.com/login"
    assert loaded.sources["services.login_page.url"] == "env"
    assert _services(loaded)["main_service"].url == "http://127.0.0.1:5000/health"


def test_embedded_login_url():
    loaded = load_config(env={}, embedded_login_url="http://127.0.0.1:8000/login")
    assert _services(loaded)["login_page"].url == "http://127.0.0.1:8000/login"


def test_embedded_login_url_comes_before_heartbeat_login_url():
    env = {"HEARTBEAT_LOGIN_URL": "https://admin.example.com/login"}
    loaded = load_config(env=env, embedded_login_url="http://127.0.0.1:8000/login")
    assert _services(loaded)["login_page"].url == "http://127.0.0.1:8000/login"


def test_file_without_services_still_gets_the_defaults_with_its_thresholds(write):
    path = write('check_interval = 12\nlogin_url = "http://10.0.0.9/login"\n')
    loaded = load_config(path, env={})
    assert list(_services(loaded)) == ["main_service", "login_page"]
    assert _services(loaded)["login_page"].url == "http://10.0.0.9/login"
    assert loaded.sources["services.login_page.url"] == "file"
    assert loaded.policies["main_service"].check_interval == 12.0
    assert loaded.sources["services.main_service.check_interval"] == "file"


def test_configured_services_replace_the_defaults(write):
    path = write('[[services]]\nname = "api"\nurl = "http://127.0.0.1:8000/"\n')
    assert list(_services(load_config(path, env={}))) == ["api"]


def test_main_service_counts_its_own_503_as_up():
    # /health answers 503 while a critical service (main_service itself, by default) is not
    # healthy: if that counted as a failed probe, one missed probe would keep it down for good.
    main = _services(load_config(env={}))["main_service"]
    assert set(main.probe.expect_status) == {200, 503}
