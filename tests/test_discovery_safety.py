"""The SSRF guard, --resolve pins, seed classification and option checks (no network)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from yarl import URL

from coverlookup.discovery import CrawlOptions, Pin
from coverlookup.discovery.fetch import AddressGuard
from coverlookup.discovery.safety import check_url, unsafe_address_reason
from coverlookup.discovery.walk import classify_seed, mirror_seed_urls
from coverlookup.errors import UnsafeURLError, UsageError


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "127.0.0.1 is a loopback address"),
        ("127.5.6.7", "127.5.6.7 is a loopback address"),
        ("::1", "::1 is a loopback address"),
        ("10.1.2.3", "10.1.2.3 is a private address"),
        ("172.16.0.1", "172.16.0.1 is a private address"),
        ("192.168.1.1", "192.168.1.1 is a private address"),
        ("fd00::1", "fd00::1 is a private address"),
        ("169.254.169.254", "169.254.169.254 is a link-local address"),
        ("fe80::1%eth0", "fe80::1 is a link-local address"),
        ("100.64.0.1", "100.64.0.1 is a carrier-grade NAT address"),
        ("224.0.0.1", "224.0.0.1 is a multicast address"),
        ("ff02::1", "ff02::1 is a multicast address"),
        ("0.0.0.0", "0.0.0.0 is the unspecified address"),
        ("::", ":: is the unspecified address"),
        ("240.0.0.1", "240.0.0.1 is a private address"),
        ("::ffff:127.0.0.1", "::ffff:7f00:1 embeds 127.0.0.1 is a loopback address"),
        (
            "::ffff:169.254.169.254",
            "::ffff:a9fe:a9fe embeds 169.254.169.254 is a link-local address",
        ),
        ("64:ff9b::a00:1", "64:ff9b::a00:1 embeds 10.0.0.1 is a private address"),
        ("2002:7f00:1::", "2002:7f00:1:: embeds 127.0.0.1 is a loopback address"),
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
        ("::ffff:8.8.8.8", None),
    ],
)
def test_address_classification(address: str, reason: str | None) -> None:
    assert unsafe_address_reason(address) == reason


def test_check_url_rules() -> None:
    check_url(URL("https://example.com/x"), allow_http=False, allow_private=False)
    check_url(URL("http://example.com/x"), allow_http=True, allow_private=False)
    cases = {
        "http://example.com/x": "plain http refused (use --allow-http)",
        "file:///etc/passwd": "refusing scheme 'file'",
        "gopher://example.com/": "refusing scheme 'gopher'",
        "https://127.0.0.1/x": "127.0.0.1 is a loopback address (use --allow-private)",
        "https://[::ffff:10.0.0.1]/x": "embeds 10.0.0.1 is a private address",
    }
    for url, message in cases.items():
        with pytest.raises(UnsafeURLError, match=message.replace("(", r"\(").replace(")", r"\)")):
            check_url(URL(url), allow_http=False, allow_private=False)
    # A downgrade is refused even with --allow-http.
    with pytest.raises(UnsafeURLError, match="refusing https -> http downgrade"):
        check_url(
            URL("http://example.com/"),
            allow_http=True,
            allow_private=False,
            came_from=URL("https://example.com/"),
        )
    check_url(URL("https://10.0.0.1/"), allow_http=False, allow_private=True)


def test_pins_parse_like_curl() -> None:
    assert Pin.parse("example.com:443:203.0.113.5") == Pin("example.com", 443, "203.0.113.5", 443)
    assert Pin.parse("Example.COM:443:127.0.0.1:8443") == Pin("example.com", 443, "127.0.0.1", 8443)
    assert Pin.parse("a.test:443:[::1]:8443") == Pin("a.test", 443, "::1", 8443)
    assert Pin.parse("a.test:443:2001:db8::1") == Pin("a.test", 443, "2001:db8::1", 443)
    for bad, message in {
        "example.com": "expected HOST:PORT:ADDRESS",
        "example.com:http:1.2.3.4": "bad port 'http'",
        "example.com:443:not-an-ip": "'not-an-ip' is not an IP address",
        "example.com:443:1.2.3.4:99999": "bad port '99999'",
    }.items():
        with pytest.raises(UsageError, match=message):
            Pin.parse(bad)


def test_guard_trusts_only_the_pinned_address() -> None:
    guard = AddressGuard(CrawlOptions(resolve=("a.test:443:127.0.0.1:8443",)).pins(), False)
    assert guard.refusal("a.test", 443, "127.0.0.1") is None
    assert guard.refusal("a.test", 443, "127.0.0.2") == (
        "a.test connected to 127.0.0.2 is a loopback address (use --allow-private)"
    )
    assert guard.refusal("b.test", 443, "127.0.0.1") is not None
    assert guard.refusal("b.test", 443, "93.184.216.34") is None
    assert AddressGuard({}, True).refusal("b.test", 443, "10.0.0.1") is None


def test_seed_classification(tmp_path: Path) -> None:
    (tmp_path / "meta.json").write_text("{}")
    assert classify_seed("example.com").kind == "domain"
    assert classify_seed("Example.COM.").target == "example.com"
    assert classify_seed("example.com:8443").kind == "domain"
    assert classify_seed("https://example.com/x.json").kind == "url"
    assert classify_seed(str(tmp_path / "meta.json")).kind == "file"
    assert classify_seed(str(tmp_path)).kind == "directory"
    assert classify_seed((tmp_path / "meta.json").as_uri()).kind == "file"
    with pytest.raises(UsageError, match="only http"):
        classify_seed("ftp://example.com/x")
    with pytest.raises(UsageError, match="not a URL, a domain"):
        classify_seed("not a seed")


def test_mirror_seed_urls(tmp_path: Path) -> None:
    (tmp_path / "a.example" / ".well-known").mkdir(parents=True)
    (tmp_path / "a.example" / ".well-known" / "cds-server-metadata.json").write_text("{}")
    (tmp_path / "b.example" / ".well-known").mkdir(parents=True)
    (tmp_path / "b.example" / ".well-known" / "carbon-data-spec.json").write_text("{}")
    (tmp_path / "static.example").mkdir()
    assert mirror_seed_urls(tmp_path) == [
        "https://a.example/.well-known/cds-server-metadata.json",
        "https://b.example/.well-known/carbon-data-spec.json",
    ]


def test_option_checks(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="concurrency must be positive, not 0"):
        CrawlOptions(concurrency=0)
    with pytest.raises(UsageError, match="no such file"):
        CrawlOptions(cafile=str(tmp_path / "missing.pem"))
    assert CrawlOptions().user_agent == (
        "coverlookup/0.1.0 (+https://github.com/coverlookup/coverlookup)"
    )


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_timeouts_must_be_finite(value: float) -> None:
    with pytest.raises(UsageError) as info:
        CrawlOptions(timeout=value)
    assert (
        str(info.value) == f"crawl option timeout must be a finite number of seconds, not {value}"
    )
    with pytest.raises(UsageError) as info:
        CrawlOptions(retry_after_cap=value)
    assert str(info.value) == (
        f"crawl option retry_after_cap must be a finite number of seconds, not {value}"
    )


def test_pins_and_domain_seeds_take_international_names_in_either_spelling() -> None:
    pin = Pin.parse("Bücher.Test.:443:127.0.0.1")
    assert pin.host == "xn--bcher-kva.test"
    guard = AddressGuard({(pin.host, pin.port): pin}, allow_private=False)
    # aiohttp resolves the xn-- name; its connector reports the Unicode one: both are pinned.
    for host in ("xn--bcher-kva.test", "bücher.test", "BÜCHER.test."):
        assert guard.pin(host, 443) is pin
        assert guard.refusal(host, 443, "127.0.0.1") is None
    assert guard.refusal("other.test", 443, "127.0.0.1") is not None
    seed = classify_seed("Bücher.test")
    assert (seed.kind, seed.target) == ("domain", "xn--bcher-kva.test")


def test_pin_with_an_unclosed_bracket_is_refused() -> None:
    with pytest.raises(UsageError) as info:
        Pin.parse("a.test:443:[::1")
    assert str(info.value) == "--resolve 'a.test:443:[::1': '[' without its ']'"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://Sub.Example./x?a=1#f", "https://sub.example/x?a=1"),  # never sent: no part
        ("https://sub.example/x#", "https://sub.example/x"),
        ("HTTPS://SUB.EXAMPLE/x", "https://sub.example/x"),
        ("HTTPS://sub.example/x", "https://sub.example/x"),  # the scheme alone
        ("https://u:p@sub.example.:8443/p%20q", "https://u:p@sub.example:8443/p%20q"),
        ("http://127.0.0.1./x", "http://127.0.0.1/x"),
        ("https://sub.example/x", "https://sub.example/x"),  # already canonical: the same string
        ("https://[::1]:8443/X", "https://[::1]:8443/X"),
        ("https://Bücher.Example./x", "https://xn--bcher-kva.example/x"),
        ("https://xn--BCHER-kva.example/x", "https://xn--bcher-kva.example/x"),
        ("https://straße.example/", "https://xn--strae-oqa.example/"),  # IDNA 2008, not 2003
        ("https://bü cher.example/x", "https://bü cher.example/x"),  # no IDNA form: as it came
        ("https://./x", "https://./x"),  # no host left: as it came, for the fetcher to refuse
        ("file:///tmp/X.json", "file:///tmp/X.json"),
        ("https://[::1", "https://[::1"),
        ("not a url", "not a url"),
    ],
)
def test_canonical_url(url: str, expected: str) -> None:
    from coverlookup.discovery.walk import canonical_url

    assert canonical_url(url) == expected


def test_retry_after_that_says_nothing_usable_backs_off_as_without_it() -> None:
    from coverlookup.discovery.fetch import Fetcher

    fetcher = Fetcher(CrawlOptions(backoff_base=0.5, backoff_max=10.0, retry_after_cap=30.0))
    assert fetcher._retry_after("7", 0) == 7.0
    assert fetcher._retry_after("3600", 0) == 30.0  # capped
    for value in ("-5", "nan", "inf", "Sun, 06 Nov 1994 08:49:37 GMT", "soon"):
        waits = {fetcher._retry_after(value, 3) for _ in range(50)}
        assert all(0.0 <= w <= 4.0 for w in waits), value  # backoff: up to 0.5 * 2**3
        assert len(waits) > 1, value  # jittered, not an immediate retry every time


def test_a_host_name_that_does_not_exist_is_not_asked_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The system resolver is replaced (tests never resolve names): NONAME is final, while a
    temporary failure (EAI_AGAIN) is retried like any connection error."""
    import asyncio
    import socket

    from aiohttp.resolver import ThreadedResolver

    from coverlookup.discovery import crawl_with_report

    calls: list[str] = []

    def failing(code: int) -> Any:
        async def resolve(self: Any, host: str, port: int = 0, family: Any = 0) -> Any:
            calls.append(host)
            raise socket.gaierror(code, "resolver says no")

        return resolve

    url = "https://gone.example/.well-known/cds-server-metadata.json"
    options = CrawlOptions(retries=2, backoff_base=0.001, backoff_max=0.01)
    for code, kind, asked in ((socket.EAI_NONAME, "dns", 1), (socket.EAI_AGAIN, "connection", 3)):
        calls.clear()
        monkeypatch.setattr(ThreadedResolver, "resolve", failing(code))
        _, report = asyncio.run(crawl_with_report([url], options=options))
        assert [p.kind for p in report.problems] == [kind]
        assert len(calls) == asked
