"""Agents, sessions and messages (DESIGN §9): each user message starts a turn run."""
