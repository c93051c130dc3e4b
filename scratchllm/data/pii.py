"""PII redaction: e-mail addresses and IP addresses are replaced by placeholders before a model can memorize them.

Language models reproduce rare strings from their training data verbatim (Carlini et al. 2021, "Extracting Training
Data from Large Language Models"), and an e-mail address or a server's IP address is exactly such a string. Large
open corpora therefore replace them: FineWeb (Penedo et al. 2024) anonymizes e-mail addresses and public IP
addresses with regular expressions, StarCoder (Li et al. 2023) redacts e-mails, IP addresses, names and keys in code
with a trained detector. We do what FineWeb does, with visible placeholders (``<EMAIL>``, ``<IP_ADDRESS>``) so that
a reader of the corpus sees that something was removed.

What is kept, and why (``keep_reserved``, on by default): addresses that identify no one. IP addresses that are not
globally routable (loopback ``127.0.0.1``, private ``192.168.x.x`` and ``10.x``, link-local, the documentation
ranges ``192.0.2.0/24`` and ``2001:db8::/32``, ...) are left alone, as FineWeb leaves all but public addresses:
code and documentation are full of ``bind(("127.0.0.1", 0))`` and a model should learn them. Likewise e-mail
addresses at the domains reserved for examples (RFC 2606 and RFC 6761: ``example.com``, ``.test``, ...).

Version numbers are not addresses: an IPv4 address needs exactly four dot-separated numbers of 0..255 with nothing
word-like or dotted around them, so "1.2.3" and "3.12.0.1.2" are untouched. A four-part version such as "3.12.0.1"
is indistinguishable from an address and is redacted when it is a public one. IPv6 candidates are checked with the
standard library's ``ipaddress`` and must have three non-empty groups, which keeps Python slices such as
``a[1::2]`` and times such as "12:30:45" intact.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from .document import Document
from .step import Mapper

EMAIL_PLACEHOLDER = "<EMAIL>"
IP_PLACEHOLDER = "<IP_ADDRESS>"

# A practical e-mail address: the common local-part characters, then a dotted domain with a letter TLD. Not the full
# RFC 5322 grammar (quoted local parts are vanishingly rare in text), but it never matches a Python decorator
# ("@property" has no local part) or a matrix product ("a @ b" has spaces).
_EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9._%+-]+@((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,})(?![\w-])"
)
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"  # 0..255 without leading zeros
_IPV4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
_IPV4_ADDRESS = re.compile(rf"(?<![\w.]){_IPV4}(?!\w|\.\d)")
# Anything shaped like IPv6 (2 to 7 colon-terminated hex groups, then a group or an embedded IPv4); ipaddress decides.
_IPV6_CANDIDATE = re.compile(rf"(?<![\w:.])(?:[0-9A-Fa-f]{{0,4}}:){{2,7}}(?:{_IPV4}|[0-9A-Fa-f]{{1,4}})?(?![\w:])")

_GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")
RESERVED_DOMAINS = ("example.com", "example.net", "example.org")  # RFC 2606, with their subdomains
RESERVED_TLDS = ("example", "test", "invalid", "localhost")  # RFC 2606 and RFC 6761


@dataclass
class PIIConfig:
    """What to redact."""

    # Keep addresses that identify no one: non-global IPs and e-mail addresses at reserved example domains.
    keep_reserved: bool = True


class RedactPII(Mapper):
    """Replaces e-mail addresses by ``<EMAIL>`` and IP addresses by ``<IP_ADDRESS>``; counts in ``stats.counters``
    (``emails``, ``ips``: addresses replaced)."""

    name = "pii"
    config_class = PIIConfig

    def __init__(self, config: PIIConfig | None = None) -> None:
        super().__init__()
        self.config = config or PIIConfig()

    def apply(self, doc: Document) -> Document:
        text = redact(doc.text, self.config.keep_reserved, self.stats.counters)
        return doc if text == doc.text else Document(doc.id, text, doc.source, doc.meta)


def is_reserved_domain(domain: str) -> bool:
    """True for the domains reserved for examples and tests, which belong to no one."""
    domain = domain.lower()
    return domain.rpartition(".")[2] in RESERVED_TLDS or any(
        domain == d or domain.endswith("." + d) for d in RESERVED_DOMAINS
    )


def parse_ip(candidate: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address ``candidate`` spells, or None. An IPv6 address needs at least three non-empty groups: ``::2`` and
    ``1::2`` are valid addresses, but in text they are Python slices (``a[1::2]``) far more often."""
    if ":" in candidate and sum(1 for group in candidate.split(":") if group) < 3:
        return None
    try:
        return ipaddress.ip_address(candidate)
    except ValueError:  # IPv6-shaped but not an address, e.g. a time "12:30:45" or a slice "a[1:2:3]"
        return None


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Globally routable. For IPv6 also inside 2000::/3, the only block IANA allocates for global unicast
    (``ipaddress`` calls every address outside its list of special blocks global, ``1000::1`` included)."""
    return address.is_global and (address.version == 4 or address in _GLOBAL_UNICAST)


def redact(text: str, keep_reserved: bool = True, counts: dict | None = None) -> str:
    """``text`` with e-mail and IP addresses replaced; ``counts["emails"]`` and ``counts["ips"]`` are increased by
    the number of replacements when ``counts`` is given."""
    counts = {} if counts is None else counts

    def email(m: re.Match) -> str:
        if keep_reserved and is_reserved_domain(m.group(1)):
            return m.group(0)
        counts["emails"] = counts.get("emails", 0) + 1
        return EMAIL_PLACEHOLDER

    def ip(m: re.Match) -> str:
        address = parse_ip(m.group(0))
        if address is None or (keep_reserved and not is_public(address)):
            return m.group(0)
        counts["ips"] = counts.get("ips", 0) + 1
        return IP_PLACEHOLDER

    text = _EMAIL.sub(email, text)
    text = _IPV6_CANDIDATE.sub(ip, text)  # before IPv4, so that an embedded IPv4 is judged as part of its IPv6 address
    return _IPV4_ADDRESS.sub(ip, text)
