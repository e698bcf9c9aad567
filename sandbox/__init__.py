"""A local, wire-compatible stand-in for the Azure tenant, for the demo and the tests."""
