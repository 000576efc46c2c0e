"""Deliverability: what makes mail from a domain trusted by the receiving side, evaluated with
the one resolver (core/resolver.py): SPF (spf.py), DKIM (dkim.py) and DMARC (dmarc.py).

The inbound path uses them to tell a sender who is who it says from one who is not
(core/inbound/auth.py)."""
