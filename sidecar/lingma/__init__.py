"""The gateway's client for the Lingma language-server binary (docs/lingma-protocol.md)."""
