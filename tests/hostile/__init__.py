"""The hostile-client suite: each test plays an attacker against a real server."""
