"""The accept's callback URL check, remembered per URL (callback_urls.py)."""

from __future__ import annotations

import pytest
from yarl import URL

from atkproxy.callback_urls import CallbackUrls
from atkproxy.destinations import Policy
from atkproxy.errors import Rejected

RECEIVER = "http://127.0.0.1:5555/hook"
LISTENER = ("127.0.0.1", 8080)


class CountingPolicy(Policy):
    """The policy, counting the URLs it was asked about."""

    checked: int = 0

    def check_url(self, value: str) -> URL:
        self.checked += 1
        return super().check_url(value)


def policy() -> CountingPolicy:
    return CountingPolicy.from_lists(["127.0.0.1/32"], [])  # type: ignore[return-value]


def test_a_url_that_passed_is_not_checked_again() -> None:
    checked = policy()
    urls = CallbackUrls(checked)

    answers = [urls.check(RECEIVER, LISTENER) for _ in range(3)]

    assert answers == [RECEIVER] * 3 and checked.checked == 1


def test_a_refused_url_is_checked_and_refused_every_time() -> None:
    checked = policy()
    urls = CallbackUrls(checked)
    for _ in range(2):
        with pytest.raises(Rejected, match="X-ATK-Callback refused") as refused:
            urls.check("ftp://127.0.0.1/hook", LISTENER)
        assert refused.value.status == 400
    assert checked.checked == 2


@pytest.mark.parametrize(
    "listener", [("127.0.0.1", 5555), ("127.0.0.1", 5555, 0, 0)], ids=["ipv4", "ipv6-shaped"]
)
def test_a_new_listener_is_protected_and_forgets_what_passed(listener: tuple[object, ...]) -> None:
    """A port 0 listener is known when its first request comes: a URL to it that passed
    before must be refused from then on."""
    urls = CallbackUrls(policy())
    assert urls.check(RECEIVER, None) == RECEIVER  # no listener address (a Unix socket)

    with pytest.raises(Rejected, match="the proxy's own address"):
        urls.check(RECEIVER, listener)


def test_what_is_remembered_is_bounded_oldest_first() -> None:
    checked = policy()
    urls = CallbackUrls(checked, limit=2)
    first, second, third = (f"http://127.0.0.1:{port}/hook" for port in (1, 2, 3))
    for url in (first, second, third, third, second):
        urls.check(url, LISTENER)
    assert checked.checked == 3  # the repeats of the two newest were remembered

    urls.check(first, LISTENER)
    assert checked.checked == 4  # the oldest had gone
