"""Who really sent a received message: SPF for the client that delivered it, DKIM for the
signatures it carries, and DMARC for its From domain (core/deliverability/).

A message whose From fails DMARC under a `quarantine` or `reject` policy is never routed by its
sender alone (anyone can write a candidate's address in From); it still routes by thread, or
lands in Unassigned marked "sender not verified". A domain without a DMARC policy (or with
`p=none`) asks for nothing, and its mail routes as before, its result shown.

Mail redirected to Recruitmail by the company's mail system arrives from that system's servers,
so SPF cannot align; DKIM signatures survive a redirect, and DMARC passes through them.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.deliverability import dkim, dmarc, spf
from core.resolver import Resolver


@dataclass(frozen=True)
class SenderAuth:
    spf: str  # pass, fail, softfail, neutral, none, permerror, temperror
    dkim: str  # pass (with the aligned-or-not domains), fail, none
    dmarc: str  # pass, fail, none, temperror
    policy: str  # the From domain's DMARC policy: none, quarantine, reject; "" without one
    detail: str

    @property
    def routes_by_sender(self) -> bool:
        """False when the From domain asks receivers to distrust mail that fails DMARC."""
        return not (self.dmarc == "fail" and self.policy in ("quarantine", "reject"))

    @property
    def verified(self) -> bool | None:
        """True: DMARC passed; False: it failed; None: the domain asks nothing, or no answer."""
        return {"pass": True, "fail": False}.get(self.dmarc)

    def summary(self) -> str:
        policy = f" (p={self.policy})" if self.policy else ""
        return f"dmarc={self.dmarc}{policy} spf={self.spf} dkim={self.dkim}"


NOT_CHECKED = SenderAuth("none", "none", "none", "", "not checked")


def authenticate(
    raw: bytes,
    from_address: str,
    *,
    client_ip: str,
    helo: str,
    mail_from: str,
    resolver: Resolver,
) -> SenderAuth:
    from_domain = from_address.rpartition("@")[2].lower().rstrip(".")
    if not from_domain:
        return SenderAuth("none", "none", "none", "", "the message has no From address")
    checked = spf.check(client_ip, mail_from, helo, resolver)
    signatures = dkim.signatures(raw, resolver)
    verified = [s.domain for s in signatures if s.ok]
    dkim_text = f"pass ({', '.join(verified)})" if verified else ("fail" if signatures else "none")
    verdict = dmarc.evaluate(
        from_domain,
        spf_result=checked.result,
        spf_domain=checked.domain,
        dkim_domains=verified,
        resolver=resolver,
    )
    return SenderAuth(checked.result, dkim_text, verdict.result, verdict.policy, verdict.detail)
