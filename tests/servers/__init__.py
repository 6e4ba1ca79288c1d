"""Real servers (Unleash, ...) that the tests start on loopback."""
