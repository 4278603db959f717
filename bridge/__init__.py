"""The local WebSocket bridge: protocol, server and a Python client. No Qt here."""
