"""The contact policy in every decision: holdout, opt-out and caps counted from the log (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from features.definitions import feature_set_version
from features.online_store import write_store
from features.policy import in_holdout
from features.settings import load_settings
from serving.decision_log import SQLiteDecisionLog, new_decision_id
from serving.runtime import Runtime
from serving.schemas import PersonalizeResponse
from tests.serving.conftest import AS_OF, ROOT, build_bundles, feature_frame, write_manifest
from tests.serving.logged import read_decision

N = 40


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_bundles(tmp_path_factory.mktemp("bundles"))


def make_home(home: Path, bundles: dict[str, Path]) -> Path:
    write_manifest(home, bundles, {"churn": 1, "cltv": 1, "next_best_offer": 1})
    frame = feature_frame(N, seed=5)
    frame.insert(0, "customer_id", [f"c{i}" for i in range(N)])
    write_store(home / "online", frame, AS_OF, feature_set_version())
    return home


def runtime(home: Path) -> Runtime:
    return Runtime(load_settings({"CXPREDICT_HOME": str(home), "CXPREDICT_API_KEYS": "k"}))


def paying(rt: Runtime) -> list[str]:
    """Customers whose best offer pays (they would get one without a policy)."""
    answers = rt.personalize_many([f"c{i}" for i in range(N)], parts=["next_best_offer"])
    return [a["customer_id"] for a in answers if a["next_best_offer"]["offer_id"] is not None]


def test_opted_out_and_holdout_never_get_an_offer_and_are_logged(tmp_path: Path, bundles: dict[str, Path]) -> None:
    home = make_home(tmp_path, bundles)
    rt = runtime(home)
    targets = paying(rt)
    start = time.time()
    assert len(targets) >= 10
    opted = targets[:5]
    (home / "optout.txt").write_text("\n".join(opted) + "\n")
    (home / "policy.yaml").write_text("holdout_share: 0.3\nmax_contacts: null\nopt_out: optout.txt\n")
    rt.contact._checked = 0.0  # the next decision re-checks the files at once (normally within a second)
    held = [c for c in targets if in_holdout(c, 0.3)]
    assert held, "the seeded ids must put someone in a 30% holdout"
    answers = [rt.personalize(c) for c in targets] + rt.personalize_many(targets)
    log: SQLiteDecisionLog = rt.decisions  # type: ignore[assignment]
    for answer in answers:
        PersonalizeResponse.model_validate(answer)
        cid, nbo = answer["customer_id"], answer["next_best_offer"]
        stored = read_decision(log, answer["decision_id"])
        if cid in held:
            assert nbo["offer_id"] is None and nbo["reason"] == "holdout"
        elif cid in opted:
            assert nbo["offer_id"] is None and nbo["reason"] == "opted_out"
        else:
            assert nbo["offer_id"] is not None and nbo.get("reason") is None
            assert stored["offer_id"] == nbo["offer_id"]
            continue
        assert nbo["ranking"], "the ranking stays for the caller's information"
        assert stored["offer_id"] == "none" and stored["outputs"]["next_best_offer"]["reason"] == nbo["reason"]
    # Withheld decisions are not contacts.
    assert not log.contacts(held + opted, start)
    log.close()


def test_policy_is_reloaded_without_restart(tmp_path: Path, bundles: dict[str, Path]) -> None:
    home = make_home(tmp_path, bundles)
    rt = runtime(home)
    cid = paying(rt)[0]
    (home / "optout.txt").write_text("")
    (home / "policy.yaml").write_text("holdout_share: 0\nopt_out: optout.txt\n")
    time.sleep(1.1)
    assert rt.personalize(cid)["next_best_offer"]["offer_id"] is not None
    (home / "optout.txt").write_text(cid + "\n")  # only the opt-out file changes
    time.sleep(1.1)
    assert rt.personalize(cid)["next_best_offer"]["reason"] == "opted_out"
    (home / "policy.yaml").write_text("holdout_share: [broken\n")
    time.sleep(1.1)
    assert rt.personalize(cid)["next_best_offer"]["reason"] == "opted_out"  # the last valid policy stays
    assert rt.contact.errors == 1
    rt.decisions.close()


_WORKER = """
import json, sys
from features.settings import load_settings
from serving.runtime import Runtime
rt = Runtime(load_settings({"CXPREDICT_HOME": sys.argv[1], "CXPREDICT_API_KEYS": "k"}))
cid, channel, n = sys.argv[2], sys.argv[3], int(sys.argv[4])
out = [rt.personalize(cid, context={"channel": channel})["next_best_offer"] for _ in range(n)]
rt.decisions.close()
print(json.dumps([o.get("reason") or o["offer_id"] for o in out]))
"""


def test_caps_are_counted_across_two_worker_processes(tmp_path: Path, bundles: dict[str, Path]) -> None:
    home = make_home(tmp_path, bundles)
    rt = runtime(home)
    cid = paying(rt)[0]
    rt.decisions.close()
    for f in home.glob("decisions.sqlite*"):  # start from an empty log: finding a paying customer logged offers
        f.unlink()
    (home / "policy.yaml").write_text("holdout_share: 0\nmax_contacts: {count: 3, days: 30}\n")

    def worker(channel: str, n: int) -> list[str]:
        done = subprocess.run(
            [sys.executable, "-c", _WORKER, str(home), cid, channel, str(n)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=True,
        )
        return json.loads(done.stdout.strip().splitlines()[-1])

    first = worker("email", 2)  # one process, e-mail: two offers
    second = worker("sms", 3)  # another process, another channel: one more, then the cap
    assert "contact_cap" not in first
    assert second[0] != "contact_cap" and second[1:] == ["contact_cap", "contact_cap"]
    log = SQLiteDecisionLog(home / "decisions.sqlite")
    assert log.contacts([cid], time.time() - 3600) == {cid: 3}
    assert log.contacts([cid], time.time() + 1) == {}  # outside the window nothing counts
    log.close()


def _decision(customer: str, offer: str | None, ts: float, shadow: bool = False) -> dict:
    return {
        "decision_id": new_decision_id(),
        "customer_id": customer,
        "ts": ts,
        "model_versions": {},
        "context": {},
        "offer_id": offer,
        "shadow": shadow,
        "next_best_offer": {"offer_id": offer if offer != "none" else None},
    }


def _count_contacts(make_log) -> None:
    now = time.time()
    one, two = make_log(), make_log()
    try:
        one.submit([_decision("a", "d10", now - 10), _decision("a", "none", now - 5)]).result()
        one.submit([_decision("b", "d10", now)]).result()
        two.submit([_decision("a", "loyal", now - 1), _decision("a", "d10", now - 40 * 86400)]).result()
        two.submit([_decision("a", "d10", now, shadow=True), _decision("c", None, now)]).result()
        for log in (one, two):
            assert log.contacts(["a", "b", "c", "zz"], now - 30 * 86400) == {"a": 2, "b": 1}
    finally:
        one.close()
        two.close()


def test_contacts_sqlite_two_handles(tmp_path: Path) -> None:
    _count_contacts(lambda: SQLiteDecisionLog(tmp_path / "decisions.sqlite"))


def test_contacts_postgres_two_replicas() -> None:
    psycopg = pytest.importorskip("psycopg")
    from serving.decision_log_pg import PostgresDecisionLog

    try:
        admin = psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True, connect_timeout=2)
    except psycopg.OperationalError:
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432 as user postgres")
    name = f"cxp_test_{secrets.token_hex(4)}"
    admin.execute(f"CREATE DATABASE {name}")
    try:
        _count_contacts(lambda: PostgresDecisionLog(f"postgresql://postgres@127.0.0.1:5432/{name}"))
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()
