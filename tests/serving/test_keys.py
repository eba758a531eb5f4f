"""API keys without a server: sources, scopes, hashing, reload and the rate limit (serving.keys)."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from features.settings import load_settings
from serving.keys import FEEDBACK, SCOPES, SCORE, KeyRing, RateLimiter, load_keys
from serving.startup import StartupError


def settings(home: Path, keys: str | None):
    env = {"CXPREDICT_HOME": str(home)}
    if keys is not None:
        env["CXPREDICT_API_KEYS"] = keys
    return load_settings(env)


def test_plain_keys_keep_both_scopes_and_named_keys_their_own(tmp_path: Path) -> None:
    ring = KeyRing(settings(tmp_path, "plain1, app:s3cret:score, crm:fb-key:feedback, both:k2:score+feedback"))
    plain = ring.authenticate("Bearer plain1")
    assert plain is not None and plain.scopes == SCOPES
    assert plain.name == "key-" + hashlib.sha256(b"plain1").hexdigest()[:8]
    assert ring.authenticate("bearer s3cret").scopes == {SCORE}
    assert ring.authenticate("Bearer fb-key").scopes == {FEEDBACK}
    assert ring.authenticate("Bearer k2").name == "both"
    for header in (None, "", "Bearer", "Bearer wrong", "s3cret", "Basic s3cret", "Bearer app:s3cret:score"):
        assert ring.authenticate(header) is None


def test_keys_are_kept_only_as_digests(tmp_path: Path) -> None:
    ring = KeyRing(settings(tmp_path, "app:very-secret-key-123:score"))
    assert "very-secret-key-123" not in repr(ring.keys)
    assert all(len(k.digest) == 32 for k in ring.keys)


def test_empty_env_is_refused_not_the_demo_key(tmp_path: Path) -> None:
    (tmp_path / "api_key").write_text("demo-key\n")
    for empty in ("", " , ,"):
        with pytest.raises(StartupError, match="CXPREDICT_API_KEYS is set but holds no key"):
            KeyRing(settings(tmp_path, empty))
    # Unset: the demo key, under the name "demo".
    assert KeyRing(settings(tmp_path, None)).authenticate("Bearer demo-key").name == "demo"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("a:SECRETX:c:d", "KEY, NAME:KEY or NAME:KEY:SCOPE"),
        ("app::score", "KEY, NAME:KEY or NAME:KEY:SCOPE"),
        ("app:SECRETX:admin", r"unknown scope\(s\) \['admin'\]"),
        ("bad name!:SECRETX", "key name"),
        ("app:SECRETX1,app:SECRETX2", "used for two different keys"),
    ],
)
def test_malformed_entries_are_named_errors_without_the_key(tmp_path: Path, entry: str, message: str) -> None:
    with pytest.raises(StartupError, match=message) as info:
        load_keys(settings(tmp_path, entry))
    assert "SECRETX" not in str(info.value)


def test_keys_file_with_digests_reloads_without_restart(tmp_path: Path) -> None:
    path = tmp_path / "api_keys.txt"
    digest = hashlib.sha256(b"file-key").hexdigest()
    path.write_text(f"# comment\nfile-app:sha256={digest}:score  # trailing comment\n")
    ring = KeyRing(settings(tmp_path, None))
    assert ring.authenticate("Bearer file-key").name == "file-app"
    (tmp_path / "api_key").write_text("demo-key")
    assert ring.authenticate("Bearer demo-key") is None  # a keys file replaces the demo key
    path.write_text("new-app:new-key\n")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert ring.maybe_reload(force=True)
    assert ring.authenticate("Bearer file-key") is None  # revoked
    assert ring.authenticate("Bearer new-key").name == "new-app"
    # A file that does not load keeps the keys in use (and says so in the log).
    path.write_text("broken:key:nope\n")
    assert not ring.maybe_reload(force=True)
    assert ring.reload_errors == 1 and ring.authenticate("Bearer new-key") is not None


def test_env_and_file_keys_together(tmp_path: Path) -> None:
    (tmp_path / "api_keys.txt").write_text("f:file-key:feedback\n")
    ring = KeyRing(settings(tmp_path, "e:env-key"))
    assert {k.name for k in ring.keys} == {"e", "f"}


def test_token_bucket() -> None:
    limiter = RateLimiter(rate=10, burst=3)
    assert [limiter.admit("a", now=100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.admit("a", now=100.0)
    assert wait == pytest.approx(0.1)
    assert RateLimiter.retry_after(wait) == "1"
    assert limiter.admit("b", now=100.0) == 0.0  # per key
    assert limiter.admit("a", now=100.25) == 0.0  # refilled
    assert RateLimiter(rate=0, burst=0).admit("a") == 0.0  # off
