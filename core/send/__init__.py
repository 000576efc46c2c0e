"""send: a single message's domain rules. `senders` (who sends, under which name), `compose`
(the MIME, composed once), `lifecycle` (the one place a message's status moves, with its
event), `schedule` (send later and the undo window), `lease` (Graph's concurrent requests per
mailbox)."""
