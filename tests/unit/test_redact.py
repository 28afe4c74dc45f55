"""What is shown of a URL or an error text: no password, no query value, no URL in errors."""

from __future__ import annotations

import pytest

from atkproxy.redact import REDACTED, mask_url, mask_urls, without_urls

R = REDACTED


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://h/x", "http://h/x"),
        ("http://u:pw@h/x", f"http://u:{R}@h/x"),
        ("http://h/x?token=s3&n=1", f"http://h/x?token={R}&n={R}"),
        ("http://u:pw@h/x?token=s3", f"http://u:{R}@h/x?token={R}"),
        ("http://h/x?flag&k=", f"http://h/x?flag&k={R}"),
        ("http://h/x?t=s3#frag", f"http://h/x?t={R}#frag"),
        ("http://h/x?a=%20b%26c", f"http://h/x?a={R}"),
        ("sqlite:///jobs.db", "sqlite:///jobs.db"),
        ("not a url", "not a url"),
        ("http://[::1", "http://[::1"),
    ],
)
def test_mask_url(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def test_mask_urls_in_a_tree() -> None:
    tree = {"a": ["http://h/?k=s3"], "b": {"c": "http://u:p@h/"}, "n": 1}
    assert mask_urls(tree) == {"a": [f"http://h/?k={R}"], "b": {"c": f"http://u:{R}@h/"}, "n": 1}


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("400, message='Bad', url='http://h:1/cb?token=s3'", "400, message='Bad', url='<URL>'"),
        ("Cannot connect to host h:1 ssl:default", "Cannot connect to host h:1 ssl:default"),
        ("see https://h/x?t=1 and http://u:p@h2/", "see <URL> and <URL>"),
        ("URL('http://h/cb?token=s3')", "URL('<URL>')"),
    ],
)
def test_without_urls(text: str, shown: str) -> None:
    assert without_urls(text) == shown
