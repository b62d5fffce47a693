"""The Autobahn TestSuite cases, run by kosoku against the WebSocket data plane."""
