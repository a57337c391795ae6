"""Helpers the test tree shares: waiting on events, real servers, spans and shadow results."""
