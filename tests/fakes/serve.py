"""Run the Microsoft and Google fakes by hand, to walk the OAuth journeys with `make run`.

    .venv/bin/python -m tests.fakes.serve [--require-admin-consent] [--block-google-app]

It prints the RECRUITMAIL_* settings that point the stack at the fakes; start `make run` with
them in the environment. The fakes sign in whoever the authorization URL hints (the custom
address) and serve HTTPS with a throwaway CA, which RECRUITMAIL_CA_BUNDLE makes trusted.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
from pathlib import Path

from tests.fakes.oauth import GoogleFake, MicrosoftFake
from tests.fakes.tls import TestCA


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--require-admin-consent", action="store_true")
    parser.add_argument("--block-google-app", action="store_true")
    args = parser.parse_args()
    ca = TestCA.create(Path(tempfile.mkdtemp(prefix="recruitmail-fakes-")))
    with MicrosoftFake(ca) as microsoft, GoogleFake(ca) as google:
        microsoft.controls.require_admin_consent = args.require_admin_consent
        google.controls.block_app = args.block_google_app
        settings = {**microsoft.settings(), **google.settings(), "ca_bundle": ca.ca_pem}
        print("# Microsoft and Google fakes are running. Start the stack with:")
        for key, value in settings.items():
            print(f"export RECRUITMAIL_{key.upper()}='{value}'")
        print("make run")
        print("# Follow a provider link as a browser would (the fake answers with a redirect):")
        print(f"#   curl -s --cacert {ca.ca_pem} -o /dev/null -w '%{{redirect_url}}' \"$URL\"")
        print("# then open (or curl) the printed http://localhost:8000/oauth/… address.")
        threading.Event().wait()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
