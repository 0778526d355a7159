"""Real third-party clients (Codex CLI, Claude Code) run against the gateway on loopback."""
