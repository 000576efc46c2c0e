"""inbound_paths: the ways replies to a custom address reach Recruitmail. `paths` (each path's
state, and when to tell the admins), `sync` (what mailbox sync imports and how), `push` (the
provider notifications that wake it, verified)."""
