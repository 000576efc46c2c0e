"""connections: the setup workflows. `setup` is what both share (one base class, the redirect
leg, activation), `smtp` is smtp-connection-setup, `oauth` is oauth-connection-setup (waiting
durably for an administrator's consent), `admin_consent` is consent-request-mail."""
