"""The register's ``sites`` section: the sites whose hits ``/matomo.php`` accepts."""

from __future__ import annotations

from pathlib import Path

from gardien.register.loader import load_register
from gardien.register.validation import valid_hostname
from tests.conftest import SEED_REGISTER
from tests.register.test_loader import edit, problems_of


def test_the_seed_declares_its_site() -> None:
    register = load_register(SEED_REGISTER)
    (site,) = register.sites
    assert site.id == 1
    assert site.activity == "audience_measurement"
    assert {"127.0.0.1", "localhost", "www.cegedim-rx.ro"} <= set(site.hostnames)


def test_duplicate_ids_unknown_activity_and_bad_hosts(tmp_path: Path) -> None:
    def mutate(data: dict) -> None:  # type: ignore[type-arg]
        site = data["sites"][0]
        site["activity"] = "ghost"
        site["hostnames"] = ["https://example.org", "Example.org", "a..b", "ok.org", "ok.org"]
        data["sites"].append({**site, "hostnames": ["x.org"], "activity": "audience_measurement"})

    problems = "\n".join(problems_of(tmp_path, edit(mutate)))
    assert "sites[1]: duplicate id '1'" in problems
    assert "sites[0].activity: no activity 'ghost'" in problems
    for j in (0, 1, 2):
        assert f"sites[0].hostnames[{j}]: not a host name" in problems
    assert "sites[0].hostnames[3]" not in problems
    assert "sites[0].hostnames[4]: duplicate host 'ok.org'" in problems


def test_types_are_checked(tmp_path: Path) -> None:
    def mutate(data: dict) -> None:  # type: ignore[type-arg]
        data["sites"][0]["id"] = 0
        data["sites"][0]["hostnames"] = []
        data["sites"][0]["extra"] = 1

    problems = "\n".join(problems_of(tmp_path, edit(mutate)))
    assert "sites[0].id" in problems
    assert "sites[0].hostnames" in problems
    assert "sites[0].extra" in problems


def test_host_syntax() -> None:
    for good in ("localhost", "127.0.0.1", "::1", "www.example.org", "xn--bcher-kva.example"):
        assert valid_hostname(good), good
    for bad in ("", "example.org:8080", "-a.org", "a b.org", "EXAMPLE.org", "a" * 64 + ".org"):
        assert not valid_hostname(bad), bad
