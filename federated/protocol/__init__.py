"""Messages, transports, the coordinator and secure aggregation: what crosses the wire."""
