"""connections: what the setup workflows and their activities agree on. `setup` is shared by
both setups (SMTP and OAuth sign-in: the round trip, activation), `oauth` is the sign-in's own,
`admin_consent` the mail that asks an administrator to approve the app."""
