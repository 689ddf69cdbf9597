"""Redaction: passwords and tokens never leave a process in a URL, an error or a log line."""

from __future__ import annotations

import logging

import pytest

from scheduler.errors import BrokerUnavailable, DatabaseUnavailable
from scheduler.logs import configure_logging
from scheduler.redact import Redactor, redact, url_secrets
from scheduler.settings import Settings


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://sched:hunter22@db:5432/scheduler", "postgresql://sched:***@db:5432/scheduler"),
        ("postgresql+psycopg://sched:p%40ss@db/s", "postgresql+psycopg://sched:***@db/s"),
        ("redis://:s3cret-pw@redis:6379/0", "redis://:***@redis:6379/0"),
        ("rediss://default:a@b@redis:6380/1", "rediss://default:***@redis:6380/1"),
        ("smtp://mailer:mail-pw@smtp.example.com:587", "smtp://mailer:***@smtp.example.com:587"),
        ("postgresql://sched@db/s?sslmode=require&password=qwerty9", "postgresql://sched@db/s?sslmode=require&password=***"),
        ("https://erp.example.com/in?api_key=abcd1234&x=1", "https://erp.example.com/in?api_key=***&x=1"),
        ("redis://redis:6379/0?token=zz99&db=2", "redis://redis:6379/0?token=***&db=2"),
        ("cannot reach redis://u:pw1234@h:1/0 or postgresql://a:bb22@h/d", "cannot reach redis://u:***@h:1/0 or "
         "postgresql://a:***@h/d"),
        ("postgresql://sched@db/scheduler", "postgresql://sched@db/scheduler"),
        ("unix:///var/run/redis.sock?db=3", "unix:///var/run/redis.sock?db=3"),
        ("no url here: 12:30@home", "no url here: 12:30@home"),
    ],
)
def test_redact_masks_passwords_and_secret_parameters(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_the_secrets_of_urls_are_masked_wherever_they_appear() -> None:
    assert url_secrets("postgresql://u:p%40ss%2Fword@h/d") == {"p%40ss%2Fword", "p@ss/word"}
    redactor = Redactor.of_urls("redis://:tops3cret@h/0", None, "smtp://m:pw@h")
    # A driver's error quoting the password without its URL; a two-letter password would mask words
    assert redactor('AUTH failed for "tops3cret" (pw ok?)') == 'AUTH failed for "***" (pw ok?)'


def test_errors_naming_a_setting_never_show_its_password() -> None:
    broker = BrokerUnavailable("redis://:tops3cret@h:6379/0", "Error 111 connecting to redis://:tops3cret@h:6379")
    database = DatabaseUnavailable("postgresql://u:tops3cret@h/d", "connection refused")
    for error in (broker, database):
        assert "tops3cret" not in error.message and "***" in error.message


def test_settings_repr_and_every_log_line_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(database_url="postgresql://u:tops3cret@h/d", redis_url="redis://:r3dis-pw@h/0",
                        smtp_url="smtp://m:m4il-pw@h:25", redis_sentinel_password="s3ntinel-pw",
                        log_format="json")
    assert "tops3cret" not in repr(settings) and "r3dis-pw" not in repr(settings)
    root = logging.getLogger()
    kept = root.handlers[:], root.level
    configure_logging(settings, service="test")
    log = logging.getLogger("test.redact")
    try:
        log.warning("connecting to %s (sentinels: %s)", settings.redis_url, settings.redis_sentinel_password)
        try:
            raise ConnectionError("SMTP login with m4il-pw refused")
        except ConnectionError:
            log.exception("mail failed for %s", settings.smtp_url)
    finally:
        root.handlers[:] = kept[0]
        root.setLevel(kept[1])
    printed = capsys.readouterr().err
    assert "connecting to redis://:***@h/0" in printed and "SMTP login with *** refused" in printed
    for secret in ("tops3cret", "r3dis-pw", "m4il-pw", "s3ntinel-pw"):
        assert secret not in printed
