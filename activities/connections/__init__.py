"""connections: the activities of the setup workflows. `setup` implements what both setups
share (tests, the round trip, activation); `oauth` the sign-in, its code exchange and the
admin-consent mail."""
