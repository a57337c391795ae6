"""Unit tests of server.rollout: the router, the stage machine, the controller, the stores."""
