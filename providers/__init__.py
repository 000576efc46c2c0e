"""Mail providers: one module each behind one protocol, found in one registry by kind."""
