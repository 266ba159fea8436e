"""The grpclib adapter: SessionService handlers, health and reflection on one server."""
