"""RedactPII: e-mail and public IP addresses are replaced and counted; version numbers, reserved addresses, Python
slices and decorators are left alone."""

import inspect
import pickle
import textwrap
from collections import Counter

import pytest

from scratchllm.data.document import Document
from scratchllm.data.pii import EMAIL_PLACEHOLDER, IP_PLACEHOLDER, PIIConfig, RedactPII, redact


def test_emails():
    counts = Counter()
    text = "Mail guido@python.org or first.last+tag@mail.example-host.co.uk. Not me@localhost."
    assert redact(text, counts=counts) == f"Mail {EMAIL_PLACEHOLDER} or {EMAIL_PLACEHOLDER}. Not me@localhost."
    assert counts == {"emails": 2}


def test_reserved_example_domains_are_kept_unless_asked():
    text = "a@example.com b@mail.example.org c@host.test d@notexample.com"
    assert redact(text) == f"a@example.com b@mail.example.org c@host.test {EMAIL_PLACEHOLDER}"
    assert redact(text, keep_reserved=False) == " ".join([EMAIL_PLACEHOLDER] * 4)


def test_public_ipv4_is_redacted_private_is_kept():
    counts = Counter()
    text = "DNS 8.8.8.8, server 93.184.216.34:443; local 127.0.0.1, 192.168.1.20, 10.0.0.1, docs 192.0.2.7."
    expected = (
        f"DNS {IP_PLACEHOLDER}, server {IP_PLACEHOLDER}:443; local 127.0.0.1, 192.168.1.20, 10.0.0.1, docs 192.0.2.7."
    )
    assert redact(text, counts=counts) == expected
    assert counts == {"ips": 2}
    assert redact("127.0.0.1 and 10.0.0.1", keep_reserved=False) == f"{IP_PLACEHOLDER} and {IP_PLACEHOLDER}"


@pytest.mark.parametrize(
    "text",
    [
        "Python 3.12.1 and setuptools 69.0.3 were used.",  # three parts: a version, never an address
        "release 1.2.3.4.5 and OID 1.3.6.1.4.1.311",  # more than four parts
        "v1.2.3.4 and build-8.8.8.8a",  # glued to a word
        "256.1.1.1 and 1.2.3.999",  # octets above 255
        "0.1.2.3",  # not global
    ],
)
def test_version_like_strings_are_untouched(text):
    assert redact(text, counts=(counts := Counter())) == text
    assert counts == {}


def test_ipv6():
    text = (
        "Google 2001:4860:4860::8888, full 2a00:1450:4001:82a:0:0:0:200e; loopback ::1, link fe80::1, docs 2001:db8::1"
    )
    expected = f"Google {IP_PLACEHOLDER}, full {IP_PLACEHOLDER}; loopback ::1, link fe80::1, docs 2001:db8::1"
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "evens = xs[::2]; odds = xs[1::2]; tail = xs[1000::3]",  # slices look like compressed IPv6
        "m[1:2:3] at 12:30:45 on 00:1a:2b:3c:4d:5e",  # slices, times and MAC addresses are not addresses
        "@property\ndef area(self): return self.w@self.h.T",  # decorators and matrix products are not e-mail
    ],
)
def test_code_is_untouched(text):
    assert redact(text) == text


def test_real_source_changes_only_in_addresses():
    source = inspect.getsource(textwrap)  # its header names the author with his e-mail address
    redacted = redact(source)
    changed = [(a, b) for a, b in zip(source.splitlines(), redacted.splitlines()) if a != b]
    assert changed and all(EMAIL_PLACEHOLDER in b for _, b in changed)
    compile(redacted, "textwrap.py", "exec")


def test_step_counts_and_keeps_every_document():
    step = RedactPII()
    docs = [
        Document("a", "write to bob@corp.io from 8.8.4.4", "t", {"k": 1}),
        Document("b", "nothing here", "t"),
    ]
    out = list(step.run(docs))
    assert [d.text for d in out] == [f"write to {EMAIL_PLACEHOLDER} from {IP_PLACEHOLDER}", "nothing here"]
    assert out[0].meta == {"k": 1} and out[1] is docs[1]
    assert step.stats.counters == {"emails": 1, "ips": 1, "changed": 1}
    assert step.stats.kept == 2 and step.stats.total_dropped == 0


def test_pickles():
    step = pickle.loads(pickle.dumps(RedactPII(PIIConfig(keep_reserved=False))))
    assert next(step.run([Document("a", "ip 10.0.0.1", "t")])).text == f"ip {IP_PLACEHOLDER}"
