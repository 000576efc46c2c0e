"""connections: the domain rules of a custom address's connection. `rules` (SMTP settings,
mailbox modes, a refused sign-in), `ownership` (an address belongs to a company only once
proven through its own mail routing), `round_trip` (the test's two legs), `admin_consent`
(the mail that asks an administrator to approve the app)."""
