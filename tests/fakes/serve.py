"""Run the Microsoft and Google fakes by hand, to walk the OAuth journeys with `make run`.

    make fakes   # the fakes with admin consent required and the Google app blocked

It writes the RECRUITMAIL_* settings that point the stack at the fakes to .recruitmail/fakes.env
(and prints them); start the stack with them: `set -a; . .recruitmail/fakes.env; make run`. The
fakes sign in whoever the authorization URL hints (the custom address) and serve HTTPS with a
throwaway CA, which RECRUITMAIL_CA_BUNDLE makes trusted by the stack; a browser warns about it
once per fake (or start Chromium with --ignore-certificate-errors).
"""

from __future__ import annotations

import argparse
import tempfile
import threading
from pathlib import Path

from tests.fakes.oauth import GoogleFake, MicrosoftFake
from tests.fakes.tls import TestCA

ENV_FILE = Path(".recruitmail") / "fakes.env"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--require-admin-consent", action="store_true")
    parser.add_argument("--block-google-app", action="store_true")
    parser.add_argument("--public-url", default="http://localhost:8000")
    args = parser.parse_args()
    ca = TestCA.create(Path(tempfile.mkdtemp(prefix="recruitmail-fakes-")))
    with MicrosoftFake(ca) as microsoft, GoogleFake(ca) as google:
        microsoft.controls.require_admin_consent = args.require_admin_consent
        google.controls.block_app = args.block_google_app
        # Gmail's Pub/Sub pushes go to the stack's push endpoint (Graph's notifications go to
        # the URL each subscription names).
        google.mail.push_url = f"{args.public_url.rstrip('/')}/inbound/gmail/push"
        settings = {**microsoft.settings(), **google.settings(), "ca_bundle": ca.ca_pem}
        lines = [f"RECRUITMAIL_{key.upper()}='{value}'" for key, value in settings.items()]
        ENV_FILE.parent.mkdir(mode=0o700, exist_ok=True)
        ENV_FILE.write_text("\n".join(lines) + "\n")
        print("# Microsoft and Google fakes are running (Ctrl-C stops them). Their settings:")
        print("\n".join(lines))
        print(f"# In another terminal: set -a; . {ENV_FILE}; make run")
        print("# Microsoft: the admin-consent link on the setup page approves at once.")
        print(f"# Google: the app is blocked until {google.url}/admin/allow-app is opened.")
        print(f"# Mailbox sync: place a reply at {microsoft.url}/fake/mailbox (Microsoft) or")
        print(f"# {google.url}/fake/mailbox (Google), after PUT /v1/connections/{{id}}/inbound.")
        threading.Event().wait()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
