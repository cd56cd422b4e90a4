"""Helpers shared between test modules (a test module never imports another): stories, peers, daemons, workers."""
