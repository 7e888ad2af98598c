"""LLM providers and models (DESIGN §9): where model calls go, and one client over their SDKs."""
